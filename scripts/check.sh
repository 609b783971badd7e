#!/usr/bin/env bash
# Static checks: module cycles, formatting, clippy with -D warnings, and rustdoc with -D warnings.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== module cycles (scripts/modcycles.py: dependencies point one way, docs/ARCHITECTURE.md)"
python3 scripts/modcycles.py circuitd/src circuit-sdk/src circuit-cli/src testkit/src \
  bench/src examples/pipeline/src tests/integration
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo doc -D warnings"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet
