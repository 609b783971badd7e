#!/usr/bin/env bash
# Builds the SWIM membership simulator in release mode and runs it; arguments go to
# bench-swim-sim (try --help). Prints Markdown tables, every one labelled SIMULATED, on stdout
# and progress on stderr. The default run takes several minutes on 2 cores.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release -p circuit-bench --bin bench-swim-sim
exec "${CARGO_TARGET_DIR:-target}"/release/bench-swim-sim "$@"
