#!/usr/bin/env bash
# Fuzzes the decoders that read untrusted bytes, each target for a bounded time (docs/FUZZING.md).
# Usage: scripts/fuzz.sh [--seconds N] [TARGET...]
#   targets: frame control spawn_spec gossip (default: all), N seconds each (default 30).
# Needs the nightly toolchain; installs cargo-fuzz if missing. Exits non-zero on any crash.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

ALL=(frame control spawn_spec gossip)
seconds=30
targets=()

usage() { sed -n '3,5s/^# \{0,1\}//p' "$0"; }

while (($#)); do
    case "$1" in
        --seconds) seconds=${2:-}; shift 2 || { usage >&2; exit 2; } ;;
        --seconds=*) seconds=${1#*=}; shift ;;
        -h | --help) usage; exit 0 ;;
        -*) echo "error: unknown option $1" >&2; usage >&2; exit 2 ;;
        *) targets+=("$1"); shift ;;
    esac
done
if ! [[ $seconds =~ ^[1-9][0-9]*$ ]]; then
    echo "error: --seconds needs a positive whole number, not \"$seconds\"" >&2
    exit 2
fi
((${#targets[@]})) || targets=("${ALL[@]}")
for t in "${targets[@]}"; do
    if [[ " ${ALL[*]} " != *" $t "* ]]; then
        echo "error: no fuzz target \"$t\" (targets: ${ALL[*]})" >&2
        exit 2
    fi
done

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "error: the nightly toolchain is missing; cargo-fuzz needs it." >&2
    echo "       install it with: rustup toolchain install nightly" >&2
    exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

mkdir -p fuzz/logs
# Targets that ran clean, failed to build, or found something.
passed=0
failed=()

for t in "${targets[@]}"; do
    log=$root/fuzz/logs/$t.log
    if ! cargo +nightly fuzz build "$t" >"$log" 2>&1; then
        printf '%-11s BUILD FAILED (see %s)\n' "$t" "$log"
        grep -m 5 -E '^error' "$log" | sed 's/^/            /' || true
        failed+=("$t")
        continue
    fi

    corpus=fuzz/corpus/$t
    mkdir -p "$corpus"
    # New inputs go to the first directory (the gitignored corpus); the seeds are only read.
    dirs=("$corpus")
    [[ -d fuzz/seeds/$t ]] && dirs+=("fuzz/seeds/$t")

    start=$SECONDS
    rc=0
    cargo +nightly fuzz run "$t" "${dirs[@]}" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >>"$log" 2>&1 || rc=$?
    took=$((SECONDS - start))

    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    units=$(find "$corpus" -type f | wc -l)
    if ((rc == 0)); then
        printf '%-11s ok     %10s execs %7s/s %4ss  corpus %s\n' \
            "$t" "${execs:-?}" "${rate:-?}" "$took" "$units"
        passed=$((passed + 1))
        continue
    fi

    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    kind=$(basename "${artifact:-unknown-}" | cut -d- -f1)
    printf '%-11s %-6s %10s execs %7s/s %4ss  (exit %s, log %s)\n' \
        "$t" "${kind^^}" "${execs:-?}" "${rate:-?}" "$took" "$rc" "$log"
    grep -m 1 -E "panicked at|ERROR: (libFuzzer|AddressSanitizer)" "$log" | sed 's/^/            /' || true
    if [[ -n $artifact ]]; then
        echo "            artifact:  $artifact"
        echo "            reproduce: cd $root && cargo +nightly fuzz run $t $artifact"
    fi
    failed+=("$t")
done

echo "fuzz: ${#targets[@]} target(s), ${seconds}s each: $passed clean, ${#failed[@]} failed${failed[*]:+ (${failed[*]})}"
((${#failed[@]} == 0))
