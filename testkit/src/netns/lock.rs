//! [`MachineLock`]: the machine-wide lock every namespace cluster is brought up under, so that a
//! test run and a benchmark (or two test threads) never share the machine's clusters.

use std::fs::File;

use crate::error::{Error, Result};

/// File locked (`flock`, exclusive) for the whole life of every cluster.
pub const LOCK_PATH: &str = "/tmp/circuit-netns.lock";

/// The machine-wide cluster lock ([`LOCK_PATH`]), held until dropped. A process holds it once:
/// share it (an `Arc`) between the clusters it brings up one after another
/// ([`UpOptions::lock`](super::UpOptions::lock)).
#[derive(Debug)]
pub struct MachineLock {
    /// Locked; unlocked when closed.
    _file: File,
}

impl MachineLock {
    /// Blocks until no other cluster is up on this machine, then holds the lock. Says on
    /// stderr when it has to wait.
    pub fn acquire() -> Result<Self> {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(LOCK_PATH)
            .map_err(|e| Error::io(format!("open {LOCK_PATH}"), e))?;
        if file.try_lock().is_err() {
            eprintln!("waiting for {LOCK_PATH}: another namespace cluster is up");
            file.lock()
                .map_err(|e| Error::io(format!("lock {LOCK_PATH}"), e))?;
        }
        Ok(Self { _file: file })
    }
}
