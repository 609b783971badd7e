#!/usr/bin/env bash
# Builds circuitd, the CLI and the encryption benchmark in release mode and runs it; arguments
# go to bench-crypto (try --help). Loopback only: no root, no network namespaces, no NATS.
# Prints Markdown tables for BENCHMARKS.md on stdout, progress on stderr.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo build --release -p circuitd -p circuit-cli -p circuit-bench
exec "${CARGO_TARGET_DIR:-target}"/release/bench-crypto "$@"
