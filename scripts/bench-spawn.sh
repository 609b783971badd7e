#!/usr/bin/env bash
# Builds circuitd and the spawn benchmark in release mode and runs it; arguments go to
# bench-spawn (try --help). Prints a Markdown table for BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release -p circuitd -p circuit-bench
exec "${CARGO_TARGET_DIR:-target}"/release/bench-spawn "$@"
