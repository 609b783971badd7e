//! Harness for circuit's benchmarks: run a real `circuitd` as a child process, sample it, and
//! print the results as Markdown tables. Each benchmark is a binary under `src/`.
//!
//! # Layout
//! - [`chanbench`]: `bench-channels`, circuit's channels beside NATS and a raw socket.
//! - [`daemon`]: [`Daemon`], a `circuitd` child on a temp dir, stopped by pid.
//! - [`procfs`]: resident memory and CPU time of a process, from `/proc`.
//! - [`report`]: [`Samples`] and the Markdown table a benchmark prints.

pub mod chanbench;
pub mod daemon;
pub mod procfs;
pub mod report;

pub use daemon::Daemon;
pub use report::Samples;
