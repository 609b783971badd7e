//! [`Trial`]: what every role process of one trial shares, and [`Side`]: where the sending and
//! the receiving roles run and connect (the same place in `bench-channels`; two daemons, or two
//! hosts' namespaces, in the cross-node benchmarks).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use tokio::process::Command;
use tokio::time::Instant;

use super::ctx::Kind;
use super::System;

/// A sender's window unless a benchmark says otherwise: the SDK's default.
pub const DEFAULT_WINDOW: u32 = 4096;

/// Where the roles of one side run.
#[derive(Debug, Clone)]
pub struct Side {
    /// Where they connect: a NATS URL, a circuitd socket, or the raw sockets' directory.
    pub endpoint: String,
    /// A program (and its arguments) that execs the role's command appended to it, in place
    /// (so the role keeps its pid): a host's namespace, say. Empty: the role runs here.
    pub launcher: Vec<OsString>,
}

impl Side {
    /// Roles that run here and connect to `endpoint`.
    pub fn local(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            launcher: Vec::new(),
        }
    }

    /// A command running `exe` on this side.
    pub fn command(&self, exe: &std::path::Path) -> Command {
        match self.launcher.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(exe);
                cmd
            }
            None => Command::new(exe),
        }
    }
}

/// What every role of one trial shares.
#[derive(Debug, Clone)]
pub struct Trial {
    /// This binary, re-executed as each role.
    pub exe: PathBuf,
    /// The contender.
    pub system: System,
    /// Where senders and pingers run and connect.
    pub sender: Side,
    /// Where receivers and echoes run and connect.
    pub receiver: Side,
    /// Subject, channel or socket name, unique to the trial.
    pub name: String,
    /// Payload size in bytes.
    pub size: usize,
    /// Runtime threads per role.
    pub threads: usize,
    /// Most messages a sender has sent and not yet seen acknowledged (`--window` of its roles;
    /// [`DEFAULT_WINDOW`] unless a benchmark says otherwise).
    pub window: u32,
    /// The server whose CPU time is measured from `go` until everything arrived.
    pub server_pid: Option<u32>,
    /// When the whole trial must have finished.
    pub deadline: Instant,
    /// How long receivers may make no progress, once every sender is done, before the missing
    /// messages count as lost.
    pub stall: Duration,
}

impl Trial {
    /// Both sides run here and connect to `endpoint`.
    pub fn same_side(endpoint: impl Into<String>) -> (Side, Side) {
        let side = Side::local(endpoint);
        (side.clone(), side)
    }

    /// The side a role of `kind` plays on.
    pub fn side(&self, kind: Kind) -> &Side {
        match kind {
            Kind::Send | Kind::Ping | Kind::Steady => &self.sender,
            Kind::Recv | Kind::Echo => &self.receiver,
        }
    }
}
