#!/usr/bin/env bash
# The README's test command: installs what the tests need, then fmt, clippy, docs and every test.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the tests need, installed when missing (CI runs as root on a fresh machine).
need_packages=()
command -v sh >/dev/null || need_packages+=(dash)
command -v sleep >/dev/null || need_packages+=(coreutils)
# The mesh tests run hosts as network namespaces on a bridge (root only; see netns-cluster.sh).
if [ "$(id -u)" -eq 0 ] && ! command -v ip >/dev/null; then
  need_packages+=(iproute2)
fi
if [ ${#need_packages[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages: ${need_packages[*]} (run as root or install them)" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_packages[@]}"
fi

scripts/check.sh

echo "== cargo build (binaries the integration tests run)"
cargo build --workspace --bins --locked

echo "== cargo test"
cargo test --workspace --locked
