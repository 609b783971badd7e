#!/usr/bin/env bash
# The CLI as a shell user runs it: `seq 1 N | circuit send q` into `circuit recv q > FILE`, with
# no option tuned, on one node (both on the channel's owner) and across two nodes on loopback
# (send through a node that does not own the channel). Interleaved rounds; prints a Markdown
# table of msgs/s (median, slowest) and the exact count of lost and duplicated lines.
#
# Usage: scripts/bench-cli-pipe.sh [--lines N] [--rounds R] [--cap C]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

lines=1000000
rounds=5
cap=1024
while [ $# -gt 0 ]; do
  case $1 in
    --lines) lines=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --cap) cap=$2; shift 2 ;;
    *) echo "bench-cli-pipe: unknown argument $1 (try --lines N, --rounds R, --cap C)" >&2; exit 2 ;;
  esac
done

cargo build --release -p circuitd -p circuit-cli >&2
bin=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# Waits up to 10 s for a command to succeed.
wait_for() {
  local what=$1 deadline=$((SECONDS + 10))
  shift
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "bench-cli-pipe: timed out waiting for $what" >&2
      exit 1
    fi
    sleep 0.05
  done
}

start_node() {
  local name=$1
  shift
  mkdir -m 700 "$work/$name"
  "$bin/circuitd" --name "$name" --socket "$work/$name/sock" --data-dir "$work/$name/data" \
    --listen 127.0.0.1:0 "$@" 2>"$work/$name/log" &
  pids+=($!)
  wait_for "$name" "$bin/circuit" --socket "$work/$name/sock" status
}

start_node a
seed=$("$bin/circuit" --socket "$work/a/sock" status | sed -n 's/^listen: //p')
start_node b --join "$seed"
wait_for "b to see a" sh -c "'$bin/circuit' --socket '$work/b/sock' nodes | grep -q '^a '"
seq 1 "$lines" >"$work/input"

# One round: the channel is owned by a; recv through a, send through $1. Prints msgs/s, lost, dup.
round() {
  local via=$1 name=$2
  "$bin/circuit" --socket "$work/a/sock" chan create "$name" --cap "$cap" >/dev/null
  "$bin/circuit" --socket "$work/a/sock" recv "$name" >"$work/out" &
  local recv=$!
  wait_for "the receiver" sh -c "'$bin/circuit' --socket '$work/a/sock' chan stat --json '$name' | grep -Eq '\"receivers\": ?1,'"
  local start end
  start=$(date +%s%N)
  "$bin/circuit" --socket "$work/$via/sock" send "$name" <"$work/input"
  "$bin/circuit" --socket "$work/a/sock" chan close "$name" >/dev/null
  wait "$recv"
  end=$(date +%s%N)
  "$bin/circuit" --socket "$work/a/sock" chan rm "$name" >/dev/null
  local got dup lost
  got=$(wc -l <"$work/out")
  dup=$(sort -n "$work/out" | uniq -d | wc -l)
  lost=$((lines - got + dup))
  echo "$(( lines * 1000000000 / (end - start) )) $lost $dup"
}

declare -A rates lost dup
for r in $(seq 1 "$rounds"); do
  for where in one two; do
    via=a
    [ "$where" = two ] && via=b
    read -r rate l d < <(round "$via" "q$r-$where")
    echo "round $r/$rounds: $where node(s): $rate msgs/s, lost $l, duplicated $d" >&2
    rates[$where]+="$rate "
    lost[$where]=$(( ${lost[$where]:-0} + l ))
    dup[$where]=$(( ${dup[$where]:-0} + d ))
  done
done

median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
slowest() { tr ' ' '\n' | grep . | sort -n | head -1; }
echo "circuit $("$bin/circuit" --version | awk '{print $2}'); $lines lines per round, $rounds rounds, channel capacity $cap; no option set on send or recv"
echo
echo "| where | msgs/s (median) | slowest round | lost | duplicated |"
echo "|---|---:|---:|---:|---:|"
for where in one two; do
  label="one node (send and recv on the owner)"
  [ "$where" = two ] && label="two nodes (send through a node that does not own the channel)"
  echo "| $label | $(echo "${rates[$where]}" | median) | $(echo "${rates[$where]}" | slowest) | ${lost[$where]} of $((lines * rounds)) | ${dup[$where]} |"
done
