//! [`Server`]: a contender's server side as the harness sees it — the process the roles talk to
//! (nats-server, circuitd, or none for the raw floor) and what a trial needs created first.

use futures::future::LocalBoxFuture;

use super::Scenario;

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
