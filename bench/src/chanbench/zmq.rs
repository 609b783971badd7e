//! The ZeroMQ contender's side in the harness: a temp dir for the trials' `ipc://` sockets and
//! no server process. Its roles are the C program `bench-c-zmq` (`bench/c/zmq_c.c`, which says
//! how senders and receivers find each other).

use anyhow::Context as _;
use tempfile::TempDir;

use super::server::Server;
use super::{cprog, System};

/// The directory the trials' sockets live in.
#[derive(Debug)]
pub struct ZmqDir {
    dir: TempDir,
    /// libzmq's version.
    client: String,
}

impl ZmqDir {
    /// A fresh private temp dir, once the C roles' program is known to run.
    pub fn new() -> anyhow::Result<Self> {
        let client = cprog::version(System::Zmq.c_program().expect("ZeroMQ's roles are C"))?;
        let dir = tempfile::Builder::new()
            .prefix("circuit-bench-zmq-")
            .tempdir()
            .context("cannot create a temp dir")?;
        Ok(Self { dir, client })
    }
}

impl Server for ZmqDir {
    fn endpoint(&self) -> String {
        self.dir.path().display().to_string()
    }

    fn pid(&self) -> Option<u32> {
        None
    }

    fn describe(&self) -> String {
        format!(
            "{}, C, no broker: PUSH/PULL over Unix sockets (each sender connected to every \
             receiver, round-robin), REQ/REP for the round trip",
            self.client
        )
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}
