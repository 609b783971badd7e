#!/usr/bin/env bash
# Builds circuitd and the channel benchmark in release mode, compiles the C contenders' roles
# (bench/c/: NATS core and JetStream with libnats, ZeroMQ with libzmq) with the system compiler
# next to them, and runs it; arguments go to bench-channels (try --help). Installs nats-server,
# libnats-dev and libzmq3-dev from Debian's packages when they are missing (as root; otherwise it
# says what to install). Honours CARGO_TARGET_DIR. Prints Markdown tables for BENCHMARKS.md on
# stdout, progress on stderr, and writes a chart of throughput by size per scenario to
# bench/plots/channels-<scenario>.svg (`--plots DIR` elsewhere, `--no-plots` none); each chart's
# image line is printed under the throughput table.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

have_nats_server() { command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ]; }
missing=()
have_nats_server || missing+=(nats-server)
[ -f /usr/include/nats/nats.h ] || missing+=(libnats-dev)
[ -f /usr/include/zmq.h ] || missing+=(libzmq3-dev)
command -v cc >/dev/null 2>&1 || missing+=(gcc)

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "bench-channels: ${missing[*]} not installed and this is not root; install with" \
      "\`sudo apt-get install ${missing[*]}\`" >&2
    if ! have_nats_server; then
      echo "bench-channels: (or pass --nats-server PATH)" >&2
      exit 1
    fi
    echo "bench-channels: going on without the C contenders that need them" >&2
  else
    echo "== installing ${missing[*]} (apt-get)" >&2
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq "${missing[@]}" >/dev/null; then
      apt-get update -qq
      apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    # The nats-server package enables a system service on 0.0.0.0:4222; the benchmark starts
    # its own servers on loopback, so do not leave one listening on every interface.
    if [[ " ${missing[*]} " == *" nats-server "* ]] && [ -d /run/systemd/system ] &&
      command -v systemctl >/dev/null 2>&1; then
      systemctl disable --now nats-server.service >/dev/null 2>&1 || true
    fi
  fi
fi

cargo build --release -p circuitd -p circuit-bench
bin="${CARGO_TARGET_DIR:-target}/release"

# The C roles go next to bench-channels, which looks for them there. One missing its library
# is removed, so a stale copy is never measured; its rows then say it is missing.
cc_role() {
  local out=$1 header=$2 source=$3 lib=$4
  if [ -f "$header" ] && command -v cc >/dev/null 2>&1; then
    echo "== cc -O2 bench/c/$source → $bin/$out" >&2
    cc -O2 -Wall -Wextra -o "$bin/$out" "bench/c/$source" bench/c/role.c "$lib" -lpthread
  else
    rm -f "$bin/$out"
  fi
}
cc_role bench-c-nats /usr/include/nats/nats.h nats_c.c -lnats
cc_role bench-c-jetstream /usr/include/nats/nats.h jetstream_c.c -lnats
cc_role bench-c-zmq /usr/include/zmq.h zmq_c.c -lzmq

exec "$bin/bench-channels" "$@"
