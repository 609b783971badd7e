#!/usr/bin/env bash
# The README's "run it" command: a local circuitd on temp paths, a few supervised workers,
# then everything it started is stopped (by pid) and removed.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== building (release)"
cargo build --release --quiet -p circuitd -p circuit-cli
bin="$PWD/target/release"
work=$(mktemp -d)
export CIRCUIT_SOCKET="$work/run/circuitd.sock"
daemon_pid=""

cleanup() {
  if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
    kill -TERM "$daemon_pid"
    wait "$daemon_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

circuit() { "$bin/circuit" "$@"; }
step() { printf "\n\033[1m$ circuit"; printf " %q" "$@"; printf "\033[0m\n"; circuit "$@"; }

"$bin/circuitd" --data-dir "$work/data" --name demo 2>"$work/circuitd.log" &
daemon_pid=$!
for _ in $(seq 1 500); do
  circuit status >/dev/null 2>&1 && break
  kill -0 "$daemon_pid" || { echo "circuitd failed to start" >&2; exit 1; }
  sleep 0.01
done

echo "circuitd (pid $daemon_pid) serving $CIRCUIT_SOCKET"
step spawn --name counter -- sh -c 'for i in 1 2 3 4 5; do echo "tick $i"; sleep 0.2; done'
step spawn --name flaky --restart on-failure --backoff 100ms --max-restarts 3 -- sh -c 'echo "trying"; exit 1'
step spawn --name server --restart always -- sh -c 'echo "serving on pid $$"; exec sleep 1000'
step ps
step logs -f counter
step wait flaky || echo "(wait exited $? — flaky gave up after 3 restarts)"
step ps -a
step logs --timestamps flaky
step stop server
step status
echo
echo "== stopping circuitd"
kill -TERM "$daemon_pid"
wait "$daemon_pid" && echo "circuitd exited cleanly"
daemon_pid=""
