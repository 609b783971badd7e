#!/usr/bin/env bash
# The README's "run it" command. Builds in release, starts a 3-node circuit mesh on this machine
# (loopback ports the kernel picks, temp data dirs, a fresh cluster key), applies the
# fetch → analyze → store pipeline manifest (examples/pipeline/pipeline.toml), follows its
# progress, prints its result, checks it against the same pipeline run in one process, applies
# the manifest again to show that nothing changes, and tears everything down: only what it
# started, by pid. Needs only the Rust toolchain (and a C compiler, which Rust needs anyway).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

bold() { printf '\n\033[1m%s\033[0m\n' "$*"; }

# --- build ----------------------------------------------------------------------------------

# `circuit install` speaks SSH through libssh2, which needs OpenSSL. Use the system's when its
# headers are there; otherwise build OpenSSL from source (slower, needs only perl and make).
features=()
if ! pkg-config --exists openssl 2>/dev/null && [ ! -e /usr/include/openssl/opensslv.h ]; then
  echo "== no OpenSSL development files here: building OpenSSL from source for circuit (once)"
  features=(--features circuit-cli/vendored-openssl)
fi
bold "== building circuitd, circuit and the pipeline example (release)"
cargo build --release --quiet -p circuitd -p circuit-cli -p circuit-pipeline "${features[@]}"
bin="${CARGO_TARGET_DIR:-$repo/target}/release"
manifest="$repo/examples/pipeline/pipeline.toml"

# --- a 3-node mesh on loopback --------------------------------------------------------------

work=$(mktemp -d)
pids=()

cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# `circuit` talks to n1 through its Unix socket, unless told otherwise.
export CIRCUIT_SOCKET="$work/n1/circuitd.sock"
circuit() { "$bin/circuit" "$@"; }
step() {
  printf '\n\033[1m$ circuit'
  printf ' %q' "$@"
  printf '\033[0m\n'
  circuit "$@"
}

# Polls `cond` (a command) every 50 ms for up to $1 seconds.
wait_for() {
  local seconds=$1 what=$2
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "demo: timed out after ${seconds}s waiting for $what" >&2
      for log in "$work"/*/circuitd.log; do
        echo "--- $log" >&2
        tail -n 20 "$log" >&2
      done
      exit 1
    fi
    sleep 0.05
  done
}

circuit keygen "$work/cluster.key" >/dev/null

# Starts node $1 with labels $2 (comma-separated K=V) and extra flags; records its pid.
start_node() {
  local name=$1 labels=$2
  shift 2
  local dir="$work/$name" label_args=() label
  mkdir -m 700 "$dir"
  for label in ${labels//,/ }; do
    label_args+=(--label "$label")
  done
  # The workers find `pipeline` in PATH, as on hosts where it is installed.
  PATH="$bin:$PATH" "$bin/circuitd" --name "$name" --socket "$dir/circuitd.sock" \
    --data-dir "$dir/data" --listen 127.0.0.1:0 --key-file "$work/cluster.key" \
    "${label_args[@]}" "$@" 2>"$dir/circuitd.log" &
  pids+=($!)
  wait_for 10 "$name to answer" env CIRCUIT_SOCKET="$dir/circuitd.sock" "$bin/circuit" status
}

start_node n1 role=ingest
seed=$(circuit status | sed -n 's/^listen: //p')
start_node n2 role=compute --join "$seed"
start_node n3 role=compute --join "$seed"
# Converged: every node sees all three alive (a node that has not yet heard of another cannot
# find the channels it owns).
mesh_ready() {
  local node
  for node in n1 n2 n3; do
    [ "$(CIRCUIT_SOCKET="$work/$node/circuitd.sock" circuit nodes | grep -c ' alive ')" -eq 3 ] || return 1
  done
}
wait_for 30 "the mesh to form" mesh_ready
echo "three circuitd (pids ${pids[*]}) on loopback, mesh seed $seed"

step nodes

# --- the pipeline ---------------------------------------------------------------------------

step apply "$manifest"
step ps
bold "== live progress (the store worker's log, on n3)"
step logs -f store
step recv -n 1 --timeout 60s result | tee "$work/result.json"

bold "== the same pipeline in one process, on local channels"
"$bin/pipeline" local --docs 2000 --seed 7 --analyzers 3 | tee "$work/local.json"
digest() { sed -n 's/.*"digest":"\([0-9a-f]*\)".*/\1/p' "$1"; }
if [ -n "$(digest "$work/result.json")" ] && [ "$(digest "$work/result.json")" = "$(digest "$work/local.json")" ]; then
  echo "same result on three nodes as in one process (digest $(digest "$work/local.json"))"
else
  echo "demo: the distributed result differs from the local one" >&2
  exit 1
fi

bold "== applying the manifest again changes nothing"
step apply "$manifest"
step status "$manifest" || true
step down "$manifest"

# --- teardown -------------------------------------------------------------------------------

bold "== stopping the three daemons"
for pid in "${pids[@]}"; do
  kill -TERM "$pid"
done
for pid in "${pids[@]}"; do
  wait "$pid" && echo "circuitd pid $pid exited cleanly"
done
pids=()
