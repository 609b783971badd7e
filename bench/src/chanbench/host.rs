//! Starting each contender's [`Server`] for a run.

use std::path::PathBuf;
use std::time::Duration;

use super::circuit::CircuitServer;
use super::nats::{self, NatsServer};
use super::rawsock::RawDir;
use super::server::Server;
use super::{RunArgs, System};

/// How long a server may take to start accepting clients.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// Starts `system`'s server.
pub async fn start(system: System, args: &RunArgs) -> anyhow::Result<Box<dyn Server>> {
    match system {
        System::Nats => {
            let binary = args
                .nats_server
                .clone()
                .unwrap_or_else(nats::default_binary);
            Ok(Box::new(NatsServer::start(&binary, READY_WITHIN)?))
        }
        System::Raw => Ok(Box::new(RawDir::new()?)),
        System::Circuit => Ok(Box::new(
            CircuitServer::start(&circuitd(args)?, READY_WITHIN).await?,
        )),
        System::JetStream => anyhow::bail!(
            "JetStream is measured by bench-replicated (scripts/bench-replicated.sh), on a \
             3-server cluster"
        ),
    }
}

/// The `circuitd` binary: `--circuitd`, else the one next to this binary (`target/release/`).
pub fn circuitd(args: &RunArgs) -> anyhow::Result<PathBuf> {
    match &args.circuitd {
        Some(path) => Ok(path.clone()),
        None => Ok(circuit_testkit::bin_dir()?.join("circuitd")),
    }
}
