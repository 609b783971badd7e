#!/usr/bin/env bash
# The README's test command: installs what the tests need, then fmt, clippy, docs, every test
# and a short run of every fuzz target.
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
# The install tests log in to those hosts over SSH: an sshd per namespace (netns-cluster.sh up
# --sshd). Where an init system runs, the package also starts the system's own sshd; ours listen
# inside the namespaces and do not meet it.
if [ "$(id -u)" -eq 0 ] && [ ! -x /usr/sbin/sshd ]; then
  need_packages+=(openssh-server)
fi
# The dashboard test opens the page in headless Chromium, driven through chromedriver over
# WebDriver (tests/integration/dashboard).
command -v chromium >/dev/null || need_packages+=(chromium)
command -v chromedriver >/dev/null || need_packages+=(chromium-driver)
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

# Every fuzz target for a short bounded time (scripts/fuzz.sh runs them longer); needs the
# nightly toolchain, installs cargo-fuzz when missing. CIRCUIT_SKIP_FUZZ=1 leaves it out.
if [ "${CIRCUIT_SKIP_FUZZ:-0}" != 1 ]; then
  echo "== fuzz (15 s per target)"
  scripts/fuzz.sh --seconds 15
fi
