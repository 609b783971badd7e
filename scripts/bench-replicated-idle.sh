#!/usr/bin/env bash
# The idle cost of replicated channels: three release daemons meshed on loopback, N channels
# created with --replicas 3 and left idle. Prints the daemons' resident memory before and after
# (all three, so every replica) and the bytes they write per second (gossip, peer links, Raft),
# without channels and with them. Usage: scripts/bench-replicated-idle.sh [N] (default 200).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200}
cargo build --release -q -p circuitd -p circuit-cli
B=${CARGO_TARGET_DIR:-target}/release
D=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$D"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
start() {
  "$B/circuitd" --name "$1" --socket "$D/$1.sock" --data-dir "$D/$1" --listen "127.0.0.1:$2" \
    ${3:+--join "127.0.0.1:$3"} >"$D/$1.log" 2>&1 &
  pids+=($!)
}
P1=$(free_port); P2=$(free_port); P3=$(free_port)
start a "$P1"
sleep 0.5
start b "$P2" "$P1"
start c "$P3" "$P1"
for _ in $(seq 100); do
  [ "$(CIRCUIT_SOCKET=$D/a.sock "$B/circuit" nodes --json 2>/dev/null | grep -o '"alive"' | wc -l)" = 3 ] && break
  sleep 0.1
done
rss() { for p in "${pids[@]}"; do awk '/VmRSS/{print $2}' "/proc/$p/status"; done | paste -sd+ | bc; }
written() { for p in "${pids[@]}"; do awk '/^wchar/{print $2}' "/proc/$p/io"; done | paste -sd+ | bc; }
r0=$(rss); w0=$(written); sleep 30; w1=$(written)
base=$(( (w1 - w0) / 30 ))
for i in $(seq 1 "$N"); do
  CIRCUIT_SOCKET=$D/a.sock "$B/circuit" chan create "idle$i" --cap 64 --replicas 3 >/dev/null
done
sleep 15
r1=$(rss); w2=$(written); sleep 60; w3=$(written)
with=$(( (w3 - w2) / 60 ))
printf '%-44s %12s\n' "idle R3 channels (3 daemons on loopback)" "$N"
printf '%-44s %12s\n' "resident memory before, KiB (3 daemons)" "$r0"
printf '%-44s %12s\n' "resident memory after, KiB (3 daemons)" "$r1"
printf '%-44s %12s\n' "memory per channel, KiB (its 3 replicas)" "$(( (r1 - r0) / N ))"
printf '%-44s %12s\n' "bytes written/s, no channels (gossip)" "$base"
printf '%-44s %12s\n' "bytes written/s, with the channels" "$with"
printf '%-44s %12s\n' "bytes written/s per idle channel" "$(( (with - base) / N ))"
