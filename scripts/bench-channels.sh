#!/usr/bin/env bash
# Builds circuitd and the channel benchmark in release mode and runs it; arguments go to
# bench-channels (try --help). Installs nats-server from the Debian package when it is missing.
# Prints Markdown tables for BENCHMARKS.md on stdout, progress on stderr.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "bench-channels: nats-server is not installed and this is not root;" \
      "install it with \`sudo apt-get install nats-server\` (or pass --nats-server PATH)" >&2
    exit 1
  fi
  echo "== installing nats-server (apt-get)" >&2
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq nats-server >/dev/null; then
    apt-get update -qq
    apt-get install -y -qq nats-server >/dev/null
  fi
  # The package enables a system service on 0.0.0.0:4222; the benchmark starts its own server
  # on loopback, so do not leave one listening on every interface.
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now nats-server.service >/dev/null 2>&1 || true
  fi
fi

cargo build --release -p circuitd -p circuit-bench
exec target/release/bench-channels "$@"
