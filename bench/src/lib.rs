//! circuit's benchmarks: real `circuitd` daemons (started, clustered and stopped by the test
//! kit, `circuit_testkit`), sampled, and the results printed as Markdown tables, some also
//! drawn as SVG charts. Each benchmark is a binary under `src/`.
//!
//! # Layout
//! - [`chanbench`]: `bench-channels`, circuit's channels (tuned, and with defaults) beside NATS
//!   core and JetStream (async-nats and the C client), ZeroMQ and a raw socket.
//! - [`cryptobench`]: `bench-crypto`, cross-node channels with the cluster key against without.
//! - [`meshbench`]: `bench-mesh`, the mesh on real daemons in network namespaces.
//! - [`plot`]: the SVG charts beside the tables (rates by payload size, distributions of
//!   durations), and where they are written (`--plots`).
//! - [`procfs`]: resident memory and CPU time of a process, from `/proc`.
//! - [`replbench`]: `bench-replicated`, replicated channels beside one-owner channels and
//!   NATS JetStream R3: throughput, round trips, failover after `kill -9`.
//! - [`report`]: [`report::Table`], the one table type every benchmark prints, and [`Samples`].
//! - [`spawnbench`]: `bench-spawn`, spawn rate and daemon memory.
//! - [`swimsim`]: `bench-swim-sim`, SWIM membership at 100–2,000 members on a virtual clock.

pub mod chanbench;
pub mod cryptobench;
pub mod meshbench;
pub mod plot;
pub mod procfs;
pub mod replbench;
pub mod report;
pub mod spawnbench;
pub mod swimsim;

pub use report::Samples;

use std::path::Path;

use circuit_testkit::DaemonBuilder;

/// How every benchmark starts `binary`: node `bench`, warnings only in its log (kept apart
/// from the tables), no colours; add flags to it as needed.
pub fn bench_daemon(binary: &Path) -> DaemonBuilder {
    circuit_testkit::Daemon::builder()
        .binary(binary)
        .name("bench")
        .log_level("warn")
        .env("NO_COLOR", "1")
}
