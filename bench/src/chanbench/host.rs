//! Each contender's server side in the harness: the process the roles talk to (nats-server,
//! circuitd, or none for the raw floor) and what a trial needs created before its roles start.

use std::path::PathBuf;
use std::time::Duration;

use futures::future::LocalBoxFuture;

use super::circuit::CircuitServer;
use super::nats::{self, NatsServer};
use super::rawsock::RawDir;
use super::{RunArgs, Scenario, System};

/// How long a server may take to start accepting clients.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// One contender's server for the whole run. Dropping it stops the server process by pid and
/// deletes its temp dir.
pub trait Server {
    /// What roles connect to: a NATS URL, circuitd's socket path, or the raw sockets' dir.
    fn endpoint(&self) -> String;

    /// The server process whose CPU time the tables report; `None` when there is none.
    fn pid(&self) -> Option<u32>;

    /// Name and version, for the table header.
    fn describe(&self) -> String;

    /// Fails, with the end of its log, if the server has exited.
    fn check_alive(&mut self) -> anyhow::Result<()>;

    /// Creates what the trial `name` of `scenario` needs (circuit: its channels, with room
    /// for `capacity` values). Nothing by default.
    fn open<'a>(
        &'a self,
        _name: &'a str,
        _scenario: Scenario,
        _capacity: u64,
    ) -> LocalBoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async { Ok(()) })
    }

    /// Removes what [`Server::open`] created. Nothing by default.
    fn close<'a>(
        &'a self,
        _name: &'a str,
        _scenario: Scenario,
    ) -> LocalBoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async { Ok(()) })
    }
}

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
    }
}

/// The `circuitd` binary: `--circuitd`, else the one next to this binary (`target/release/`).
pub fn circuitd(args: &RunArgs) -> anyhow::Result<PathBuf> {
    crate::daemon::circuitd_binary(args.circuitd.as_deref())
}
