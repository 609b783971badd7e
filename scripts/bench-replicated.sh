#!/usr/bin/env bash
# Builds circuitd, the CLI and the benchmarks in release mode and runs the replicated-channel
# benchmark; arguments go to bench-replicated (try --help). Installs nats-server from the
# Debian package when it is missing (as root). Honours CARGO_TARGET_DIR. Prints Markdown tables
# for BENCHMARKS.md on stdout, progress on stderr, and writes charts to bench/plots/
# (`--plots DIR` elsewhere, `--no-plots` none): replicated-<scenario>.svg, throughput by size,
# and replicated-failover.svg, every failover trial; their image lines go under their tables.
#
# Throughput and round trips run on loopback (three circuitd daemons, three JetStream servers).
# Failover runs circuit on five network-namespace hosts (scripts/netns-cluster.sh), which needs
# root; without it that half is skipped with a note. The namespace cluster is taken down
# however the run ends.
#
#   scripts/bench-replicated.sh                        # 3 rounds, 20 failover trials per system
#   scripts/bench-replicated.sh --quick                # a short smoke run
#   scripts/bench-replicated.sh --phases failover --failover-trials 3
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "bench-replicated: nats-server is not installed and this is not root;" \
      "install it with \`sudo apt-get install nats-server\` (or pass --nats-server PATH)" >&2
    exit 1
  fi
  echo "== installing nats-server (apt-get)" >&2
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq nats-server >/dev/null; then
    apt-get update -qq
    apt-get install -y -qq nats-server >/dev/null
  fi
  # The package enables a system service on 0.0.0.0:4222; the benchmark starts its own servers
  # on loopback, so do not leave one listening on every interface.
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now nats-server.service >/dev/null 2>&1 || true
  fi
fi

# The flags this script reads; everything goes on to bench-replicated unchanged.
id=""
own_bin=""
prev=""
for arg in "$@"; do
  case $prev in
    --id) id=$arg ;;
  esac
  case $arg in
    --id=*) id=${arg#--id=} ;;
    --bin | --bin=*) own_bin=1 ;;
  esac
  prev=$arg
done

cargo build --release -p circuitd -p circuit-cli -p circuit-bench
bin="$(realpath "${CARGO_TARGET_DIR:-target}/release")"
extra=()
if [ -z "$own_bin" ]; then
  extra=(--bin "$bin")
fi

# As root, a free namespace cluster ID chosen here, so that this script can take the cluster
# down even if bench-replicated is killed (it takes it down itself on errors, SIGINT and
# SIGTERM).
if [ "$(id -u)" -eq 0 ] && scripts/netns-cluster.sh check >/dev/null 2>&1; then
  id_free() {
    [ ! -e "${CIRCUIT_NETNS_STATE:-/tmp/circuit-netns}/$1" ] &&
      ! ip link show "cb$1" >/dev/null 2>&1 &&
      ! ip netns list | awk '{print $1}' | grep -qE "^c$1-h[0-9]+$"
  }
  if [ -z "$id" ]; then
    id=$(($$ % 4000 + 8000))
    until id_free "$id"; do
      id=$((id % 16383 + 1))
    done
    extra+=(--id "$id")
  fi
  trap 'scripts/netns-cluster.sh down --id "$id" >/dev/null 2>&1 || true' EXIT
fi

started=$SECONDS
status=0
"$bin/bench-replicated" "${extra[@]}" "$@" || status=$?
echo "bench-replicated: finished in $(((SECONDS - started) / 60)) min" \
  "$(((SECONDS - started) % 60)) s (exit $status)" >&2
exit "$status"
