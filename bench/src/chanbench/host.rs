//! Starting each contender's [`Server`] for a run: each gets a server process (or directory)
//! of its own.

use std::path::PathBuf;
use std::time::Duration;

use super::circuit::CircuitServer;
use super::nats::{self, NatsServer};
use super::natsc::{JetStreamCServer, NatsCServer};
use super::rawsock::RawDir;
use super::server::Server;
use super::zmq::ZmqDir;
use super::{RunArgs, System};

/// How long a server may take to start accepting clients.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// Starts `system`'s server.
pub async fn start(system: System, args: &RunArgs) -> anyhow::Result<Box<dyn Server>> {
    let nats_server = || {
        args.nats_server
            .clone()
            .unwrap_or_else(nats::default_binary)
    };
    match system {
        System::Nats => Ok(Box::new(NatsServer::start(&nats_server(), READY_WITHIN)?)),
        System::NatsC => Ok(Box::new(NatsCServer::start(&nats_server(), READY_WITHIN)?)),
        System::JetStreamC => Ok(Box::new(
            JetStreamCServer::start(&nats_server(), READY_WITHIN).await?,
        )),
        System::Zmq => Ok(Box::new(ZmqDir::new()?)),
        System::Raw => Ok(Box::new(RawDir::new()?)),
        System::Circuit | System::CircuitDefaults => Ok(Box::new(
            CircuitServer::start(&circuitd(args)?, READY_WITHIN, system).await?,
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
