#!/usr/bin/env bash
# Builds the release binaries and runs the mesh benchmark on real daemons, one per Linux network
# namespace (scripts/netns-cluster.sh); arguments go to bench-mesh (try --help). Root only.
# Installs stress-ng (Debian package) when a soak is asked for and it is missing. Honours
# CARGO_TARGET_DIR. Prints Markdown tables for BENCHMARKS.md on stdout, progress on stderr, and
# writes bench/plots/mesh-kill.svg, every kill trial's failure-detection times (`--plots DIR`
# elsewhere, `--no-plots` none), its image line under the failure-detection table. The cluster
# it used is taken down however the run ends.
#
#   scripts/bench-mesh.sh                      # 5 and 20 daemons, 20 trials, no soak
#   scripts/bench-mesh.sh --soak 10            # the same, then a 10-minute soak at 20 daemons
#   scripts/bench-mesh.sh --sizes 5 --trials 3 --phases kill
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "bench-mesh: needs root (network namespaces, veths and a bridge are root-only)" >&2
  exit 2
fi
scripts/netns-cluster.sh check || {
  echo "bench-mesh: this machine cannot run namespace clusters (see above)" >&2
  exit 2
}

# The flags this script reads; everything goes on to bench-mesh unchanged.
soak=0
id=""
prev=""
for arg in "$@"; do
  case $prev in
    --soak) soak=$arg ;;
    --id) id=$arg ;;
  esac
  case $arg in
    --soak=*) soak=${arg#--soak=} ;;
    --id=*) id=${arg#--id=} ;;
    -h | --help) soak=0 ;;
  esac
  prev=$arg
done

if [ "$soak" != 0 ] && ! command -v stress-ng >/dev/null 2>&1; then
  echo "== installing stress-ng (apt-get)" >&2
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq stress-ng >/dev/null; then
    apt-get update -qq
    apt-get install -y -qq stress-ng >/dev/null
  fi
fi

cargo build --release --workspace --bins

# A free cluster ID, chosen here so that this script can take the cluster down even if
# bench-mesh is killed (it takes it down itself on errors, SIGINT and SIGTERM).
id_free() {
  [ ! -e "${CIRCUIT_NETNS_STATE:-/tmp/circuit-netns}/$1" ] &&
    ! ip link show "cb$1" >/dev/null 2>&1 &&
    ! ip netns list | awk '{print $1}' | grep -qE "^c$1-h[0-9]+$"
}
extra=()
if [ -z "$id" ]; then
  id=$(($$ % 4000 + 12000))
  until id_free "$id"; do
    id=$((id % 16383 + 1))
  done
  extra=(--id "$id")
fi
trap 'scripts/netns-cluster.sh down --id "$id" >/dev/null 2>&1 || true' EXIT

started=$SECONDS
status=0
"${CARGO_TARGET_DIR:-target}/release/bench-mesh" "${extra[@]}" "$@" || status=$?
echo "bench-mesh: finished in $(((SECONDS - started) / 60)) min $(((SECONDS - started) % 60)) s (exit $status)" >&2
exit "$status"
