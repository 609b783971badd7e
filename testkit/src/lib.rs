//! The one harness of circuit's integration tests and benchmarks: real `circuitd` processes on
//! temp paths, clusters of network namespaces, the built `circuit` binary, liveness checks, and
//! polling with deadlines instead of sleeps.
//!
//! Two kinds of calls. Those a benchmark makes return [`Result`] with an [`Error`] that names
//! what failed and ends with the evidence (`DaemonBuilder::start`, `Daemon::stop`,
//! `NetnsCluster::try_up`, `try_kill`, `try_wait_until`, …). The tests' shorthands and
//! assertion helpers panic with that same message instead (`Daemon::start`, `cli_ok`,
//! `NetnsCluster::up`, `kill`, `wait_until`, the [`requests`] helpers, …).
//!
//! # Layout
//! - [`daemon`]: [`Daemon`], a circuitd child with its own socket and data dir, started by a
//!   [`DaemonBuilder`] and stopped by pid; the CLI aimed at it.
//! - [`netns`]: [`NetnsCluster`], test hosts as network namespaces with one circuitd each
//!   (`scripts/netns-cluster.sh`), partitions, commands in a host, ssh; the machine lock.
//! - [`liveness`]: [`alive`], [`in_namespace`], [`converged`].
//! - [`wait`]: [`wait_until`], [`wait_until_async`] and their `try_` forms.
//! - [`mod@bin`]: where the built binaries are ([`bin()`], [`bin_dir`]); the CLI run bare
//!   ([`cli_raw`]), [`keygen`].
//! - [`requests`]: SDK requests tests repeat (spawn, list, stop, inspect, logs).
//! - [`steps`]: [`Steps`], a long test as named steps that each report their failure.
//! - [`error`]: the [`Error`] the fallible calls return.

pub mod bin;
pub mod daemon;
pub mod error;
pub mod liveness;
pub mod netns;
pub mod requests;
pub mod steps;
pub mod wait;

pub use bin::{bin, bin_dir, cli_raw, json_list, keygen, stderr};
pub use daemon::{Daemon, DaemonBuilder, Stopped};
pub use error::{Error, Result};
pub use liveness::{alive, converged, in_namespace};
pub use netns::{Host, MachineLock, NetnsCluster, UpOptions, MESH_PORT};
pub use requests::{inspect, list, log_lines, sh, spawn, stop};
pub use steps::Steps;
pub use wait::{try_wait_until, try_wait_until_async, wait_until, wait_until_async};
