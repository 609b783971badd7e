//! Harness for circuit's benchmarks: run a real `circuitd` as a child process, sample it, and
//! print the results as Markdown tables. Each benchmark is a binary under `src/`.
//!
//! # Layout
//! - [`chanbench`]: `bench-channels`, circuit's channels beside NATS and a raw socket.
//! - [`cryptobench`]: `bench-crypto`, cross-node channels with the cluster key against without.
//! - [`daemon`]: [`Daemon`], a `circuitd` child on a temp dir (with any flags), stopped by pid;
//!   where the `circuitd` binary is.
//! - [`meshbench`]: `bench-mesh`, the mesh on real daemons in network namespaces.
//! - [`procfs`]: resident memory and CPU time of a process, from `/proc`.
//! - [`report`]: [`Samples`] and the Markdown table a benchmark prints.
//! - [`swimsim`]: `bench-swim-sim`, SWIM membership at 100–2,000 members on a virtual clock.

pub mod chanbench;
pub mod cryptobench;
pub mod daemon;
pub mod meshbench;
pub mod procfs;
pub mod report;
pub mod swimsim;

pub use daemon::Daemon;
pub use report::Samples;
