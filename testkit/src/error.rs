//! `Error`: what a kit call that a benchmark makes can fail with. Each message names what was
//! being done and ends with the evidence (a daemon's last log lines, a script's stderr), so a
//! benchmark prints it as it is and a test panics with it.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// A kit operation that failed. The message carries its cause (there is no source chain to
/// print twice).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A binary of the workspace is not built.
    #[error(
        "{} is missing: build it first (`cargo build --workspace --bins`, as scripts/test.sh does; \
         `--release` for the benchmarks)",
        .0.display()
    )]
    MissingBinary(PathBuf),
    /// A system call or a program could not run.
    #[error("cannot {what}: {err}")]
    Io {
        /// What was being done (`start circuitd`, `read /proc/42/stat`).
        what: String,
        /// Why not.
        err: std::io::Error,
    },
    /// A process the kit started exited before it was ready.
    #[error("{what} exited during start-up ({status}){log}")]
    Exited {
        /// Which process (`circuitd "a"`).
        what: String,
        /// How it ended.
        status: ExitStatus,
        /// The end of its log, as a suffix (may be empty).
        log: String,
    },
    /// A condition did not come true in time.
    #[error("timed out after {after:?} waiting until {what}{log}")]
    TimedOut {
        /// The condition, as a phrase (`circuitd answers on its socket`).
        what: String,
        /// How long it waited.
        after: Duration,
        /// Evidence, as a suffix (may be empty).
        log: String,
    },
    /// A command the kit ran failed.
    #[error("{command} failed ({status}): {output}")]
    Command {
        /// The command, as a phrase (`netns-cluster.sh up 3 --id 7`).
        command: String,
        /// Its exit status.
        status: ExitStatus,
        /// Its stderr (and stdout when that says more), trimmed.
        output: String,
    },
    /// `netns-cluster.sh up` was given a cluster ID that is taken.
    #[error(
        "cluster ID {0} is in use (pass another one, or take it down with \
         `scripts/netns-cluster.sh down --id {0}`)"
    )]
    IdInUse(u32),
    /// The kit was asked for something the state of its processes does not allow.
    #[error("{0}")]
    State(String),
}

impl Error {
    /// An [`Error::Io`] for `what`.
    pub fn io(what: impl Into<String>, err: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            err,
        }
    }

    /// True if a condition did not come true in time.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::TimedOut { .. })
    }

    /// True if a started process exited before it was ready.
    pub fn is_exited(&self) -> bool {
        matches!(self, Self::Exited { .. })
    }
}

/// What the kit's calls return.
pub type Result<T, E = Error> = std::result::Result<T, E>;
