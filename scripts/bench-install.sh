#!/usr/bin/env bash
# How long `circuit install` takes on 3 hosts (network namespaces, each with a real sshd; see
# netns-cluster.sh up --sshd): a fresh install, the same command again (nothing to do), an
# upgrade to another binary, and uninstall. Release build; TRIALS rounds (default 3); prints
# the median of each step. Root only.
set -euo pipefail
cd "$(dirname "$0")/.."
trials=${TRIALS:-3}
[ "$(id -u)" -eq 0 ] || { echo "bench-install: needs root (network namespaces)" >&2; exit 2; }

cargo build --release --quiet -p circuitd -p circuit-cli
bin=$(realpath "${CARGO_TARGET_DIR:-target}")/release
work=$(mktemp -d)
id=$((($$ % 10000) + 5000))
cleanup() {
  scripts/netns-cluster.sh down --id "$id" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

scripts/netns-cluster.sh up 3 --id "$id" --bin "$bin" --sshd --no-daemons >"$work/hosts"
identity=$(awk '$1 == "ssh" {print $2}' "$work/hosts")
known_hosts=$(awk '$1 == "ssh" {print $3}' "$work/hosts")
mapfile -t hosts < <(awk '$1 == "sshd" {print $3}' "$work/hosts")
"$bin/circuit" keygen "$work/cluster.key" >/dev/null
cp "$bin/circuitd" "$work/circuitd.v2"
printf 'another build' >>"$work/circuitd.v2"

ssh_flags=(--identity "$identity" --known-hosts "$known_hosts")
# Runs one step, checks every host got `want`, prints its seconds.
timed() {
  local want=$1
  shift
  local start end
  start=$(date +%s.%N)
  "$bin/circuit" --key-file "$work/cluster.key" --json "$@" "${ssh_flags[@]}" "${hosts[@]}" \
    >"$work/out.json" 2>"$work/err"
  end=$(date +%s.%N)
  local results
  results=$(grep -o '"result": *"[a-z]*"' "$work/out.json" | sed 's/.*"\([a-z]*\)"$/\1/' | sort -u)
  [ "$results" = "$want" ] || { echo "bench-install: $* gave $results, wanted $want" >&2; cat "$work/err" >&2; exit 1; }
  awk -v a="$start" -v b="$end" 'BEGIN {printf "%.3f", b - a}'
}

declare -A times
for t in $(seq 1 "$trials"); do
  times[install]+="$(timed installed install --binary "$bin/circuitd") "
  times[again]+="$(timed unchanged install --binary "$bin/circuitd") "
  times[upgrade]+="$(timed upgraded install --binary "$work/circuitd.v2") "
  times[uninstall]+="$(timed removed uninstall) "
  echo "trial $t done" >&2
done

median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
size=$(du -m "$bin/circuitd" | cut -f1)
echo
echo "circuit install, 3 hosts over OpenSSH (netns), circuitd ${size} MiB, median of $trials"
printf '%-34s %8s\n' "step" "seconds"
printf '%-34s %8.2f\n' "fresh install (upload, start, mesh)" "$(echo "${times[install]}" | median)"
printf '%-34s %8.2f\n' "same command again (unchanged)" "$(echo "${times[again]}" | median)"
printf '%-34s %8.2f\n' "upgrade to another binary" "$(echo "${times[upgrade]}" | median)"
printf '%-34s %8.2f\n' "uninstall" "$(echo "${times[uninstall]}" | median)"
