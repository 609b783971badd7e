#!/usr/bin/env bash
# Test hosts as Linux network namespaces: one bridge, N namespaces with a veth on it, and one
# circuitd per namespace (and, with --sshd, one OpenSSH server). Partitions are neighbour
# entries to a MAC nobody has (silent loss) or blackhole routes (--reject). Root only; see
# `--help`.
set -euo pipefail

readonly PORT=7711
readonly SSHD=/usr/sbin/sshd
# With --sshd, the bridge takes this host number in the cluster's /24, so the root namespace
# (tests, `circuit install`) reaches every host's address.
readonly BRIDGE_HOST=254
readonly MAX_ID=16383
readonly MAX_HOSTS=200
readonly GRACE_S=5
readonly START_DEADLINE_S=20
# Partitioned peers' addresses resolve to this MAC: frames go out and nobody takes them.
readonly NOBODY_MAC=02:00:00:00:00:00
readonly STATE_ROOT=${CIRCUIT_NETNS_STATE:-/tmp/circuit-netns}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly REPO
# Network flags of every daemon, then of every daemon but h1. Words; {addr} is the host's
# ip:port, {ip} its address, {seed} h1's ip:port, {key} the cluster's key file (made by `up`
# with `circuit keygen`). Set to "" to leave them out.
readonly LISTEN_ARGS=${CIRCUIT_NETNS_LISTEN_ARGS-"--listen {addr} --key-file {key}"}
readonly JOIN_ARGS=${CIRCUIT_NETNS_JOIN_ARGS-"--join {seed}"}

usage() {
  cat <<EOF
netns-cluster.sh: test hosts as Linux network namespaces, one circuitd in each.

Usage:
  netns-cluster.sh up N [--id ID] [--bin DIR] [--no-daemons] [--sshd] [-- EXTRA_CIRCUITD_ARGS...]
      Create a bridge and N namespaces (hosts h1..hN at 10.X.Y.1..N/24, X.Y from ID), start
      circuitd in each (h2..hN join h1) and wait until every daemon answers. Prints one line
      per host: "h<i> <ip> <socket> <pid>" (pid "-" when no daemon runs). ID: 1..$MAX_ID,
      default derived from the pid. DIR: where circuitd and circuit are [default:
      target/debug of the repository].
      --no-daemons: start no circuitd (\`start I\` can, later).
      --sshd: also run OpenSSH's sshd in each host at <ip>:22, as a host of its own: its own
      UTS namespace (\`hostname\` says h<i>) and mount namespace where /opt is a fresh empty
      tmpfs; root logs in with the cluster's key only. The bridge gets 10.X.Y.$BRIDGE_HOST/24 so
      the root namespace reaches the hosts. Waits until each sshd lets the key in, then prints
      after the host lines one line per host, "sshd h<i> root@<ip> <sshd pid>", and one line
      "ssh <identity file> <known_hosts file>". Then:
        ssh -F none -i \$STATE/ssh/id_ed25519 -o UserKnownHostsFile=\$STATE/ssh/known_hosts \\
            -o StrictHostKeyChecking=yes -o BatchMode=yes root@<ip> CMD
  netns-cluster.sh down [--id ID | --all]
      Stop the daemons (by recorded pid: SIGTERM, SIGKILL after ${GRACE_S} s), kill what is
      left in the namespaces, delete namespaces, links and state. Idempotent. --all: every
      cluster this script made (after an interrupted run).
  netns-cluster.sh kill I [--id ID]          SIGKILL host I's daemon.
  netns-cluster.sh start I [--id ID]         Start host I's daemon again, same flags and data.
  netns-cluster.sh partition A B [--id ID] [--reject]
      Cut traffic between host groups A and B both ways (comma lists: "1,2" "3"); traffic
      within a group, and with hosts in neither, still flows. Packets are lost silently, as on
      a real partition: a TCP connect hangs, UDP sends succeed. --reject: blackhole routes
      instead, so senders fail at once (EINVAL). Partitions add up until \`heal\`.
  netns-cluster.sh heal [--id ID]            Remove every partition.
  netns-cluster.sh exec [--id ID] I CMD...   Run CMD in host I's namespace, CIRCUIT_SOCKET set.
  netns-cluster.sh list [--id ID]            Print the hosts as \`up\` does (pid "-" if down).
  netns-cluster.sh check [--sshd]            Exit 0 if this machine can run clusters (with
      --sshd: clusters with sshd; without it, a note says what --sshd would miss).

Without --id, commands other than \`up\` use \$CIRCUIT_NETNS_ID, else the only cluster there is.

Names: namespace c<ID>-h<i>, bridge cb<ID>, host-side veth cv<ID>h<i> (eth0 inside).
Daemons: circuitd --name h<i> --socket \$STATE/h<i>/circuitd.sock --data-dir \$STATE/h<i>/data
  \$CIRCUIT_NETNS_LISTEN_ARGS [\$CIRCUIT_NETNS_JOIN_ARGS for i>1] EXTRA..., log in
  \$STATE/h<i>/circuitd.log, pid in \$STATE/h<i>/pid. STATE = \$CIRCUIT_NETNS_STATE/<ID>
  [default: /tmp/circuit-netns/<ID>]. LISTEN_ARGS default "--listen {addr} --key-file {key}",
  JOIN_ARGS default "--join {seed}"; {addr} = ip:$PORT of the host, {ip} its address, {seed} =
  h1's ip:$PORT, {key} = \$STATE/cluster.key, a fresh cluster key made by \`up\`.
sshd (--sshd): $SSHD -D -e -f \$STATE/h<i>/sshd_config, host key \$STATE/h<i>/ssh_host_ed25519_key,
  log \$STATE/h<i>/sshd.log, pid in \$STATE/h<i>/sshd.pid. The cluster's client key pair is
  \$STATE/ssh/id_ed25519{,.pub}, listed in \$STATE/ssh/authorized_keys; \$STATE/ssh/known_hosts
  lists every host's address with its host key.
Without --sshd the bridge has no address; no namespace has a default route either way: traffic
stays inside. Unix sockets are files, so the daemons' sockets work from outside the namespaces.

Example:
  sudo scripts/netns-cluster.sh up 3 --id 42
  sudo scripts/netns-cluster.sh exec --id 42 1 target/debug/circuit status
  sudo scripts/netns-cluster.sh partition --id 42 1,2 3
  sudo scripts/netns-cluster.sh down --id 42
EOF
}

die() {
  echo "netns-cluster: $*" >&2
  exit 1
}

usage_error() {
  echo "netns-cluster: $*" >&2
  echo "netns-cluster: see \`$0 --help\`" >&2
  exit 2
}

need_root() {
  [ "$(id -u)" -eq 0 ] || {
    echo "netns-cluster: needs root (network namespaces, veths and bridges are root-only)" >&2
    exit 2
  }
  command -v ip >/dev/null || {
    echo "netns-cluster: needs iproute2 (the \`ip\` command is missing)" >&2
    exit 2
  }
}

# --- names ---------------------------------------------------------------------------------

ns_of() { echo "c${ID}-h$1"; }
veth_of() { echo "cv${ID}h$1"; }
bridge_of() { echo "cb${ID}"; }
subnet_of() { echo "10.$((128 + $1 / 256)).$(($1 % 256))"; }
ip_of() { echo "$(subnet_of "$ID").$1"; }
state_of() { echo "$STATE_ROOT/$1"; }

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }

# Microseconds since the epoch.
now_us() { echo "${EPOCHREALTIME//[!0-9]/}"; }

# --- processes ------------------------------------------------------------------------------

# True if $1 is a live, non-zombie process.
alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*") "}
  [[ ${stat:0:1} != [ZX] ]]
}

# True if pid $2 is alive and inside namespace $1: a recycled pid is never signalled.
ours() {
  is_uint "$2" && alive "$2" || return 1
  local name
  for name in $(ip netns identify "$2" 2>/dev/null); do
    [ "$name" = "$1" ] && return 0
  done
  return 1
}

# Waits until none of the pids is alive or $1 seconds have passed; returns 1 on timeout.
wait_dead() {
  local deadline=$(($(now_us) + $1 * 1000000)) pid
  shift
  for pid in "$@"; do
    while alive "$pid"; do
      [ "$(now_us)" -lt "$deadline" ] || return 1
      sleep 0.02
    done
  done
}

# --- state ----------------------------------------------------------------------------------

# Loads the cluster's metadata (N, BIN) after ID is set.
load_cluster() {
  STATE=$(state_of "$ID")
  [ -f "$STATE/meta" ] || die "no cluster $ID (nothing in $STATE; see \`$0 list\`)"
  N=$(sed -n 's/^n=//p' "$STATE/meta")
  BIN=$(sed -n 's/^bin=//p' "$STATE/meta")
  WITH_SSHD=$(sed -n 's/^sshd=//p' "$STATE/meta")
  WITH_SSHD=${WITH_SSHD:-0}
  is_uint "$N" || die "$STATE/meta is damaged"
}

# The IDs of every cluster that has state, a namespace or a bridge.
all_ids() {
  {
    if [ -d "$STATE_ROOT" ]; then
      find "$STATE_ROOT" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | grep -E '^[0-9]+$' || true
    fi
    ip netns list 2>/dev/null | awk '{print $1}' | sed -nE 's/^c([0-9]+)-h[0-9]+$/\1/p'
    ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed -nE 's/^cb([0-9]+)$/\1/p'
  } | sort -un
}

# Sets ID from --id, $CIRCUIT_NETNS_ID or the only cluster there is.
resolve_id() {
  if [ -n "${ID:-}" ]; then
    return
  fi
  if [ -n "${CIRCUIT_NETNS_ID:-}" ]; then
    ID=$CIRCUIT_NETNS_ID
    return
  fi
  local ids
  ids=$(all_ids)
  case $(echo "$ids" | grep -c .) in
    0) die "no cluster is up (start one with \`$0 up N\`)" ;;
    1) ID=$ids ;;
    *) die "several clusters are up (${ids//$'\n'/ }): pass --id" ;;
  esac
}

check_id() {
  is_uint "$1" && [ "$1" -ge 1 ] && [ "$1" -le "$MAX_ID" ] ||
    usage_error "cluster ID must be a number in 1..$MAX_ID, got \"$1\""
}

# Validates a host number against N.
check_host() {
  is_uint "$1" && [ "$1" -ge 1 ] && [ "$1" -le "$N" ] ||
    die "no host \"$1\" in cluster $ID (hosts are 1..$N)"
}

# True if nothing of cluster $1 exists.
id_free() {
  local id=$1
  [ ! -e "$(state_of "$id")" ] || return 1
  ! ip link show "cb$id" >/dev/null 2>&1 || return 1
  ! ip netns list | awk '{print $1}' | grep -qE "^c$id-h[0-9]+$"
}

# --- teardown -------------------------------------------------------------------------------

# Removes everything of cluster $1; never fails.
teardown() {
  local -
  set +e
  local id=$1 state ns pid pid_file link i
  local -a pids=() nss=()
  state=$(state_of "$id")
  mapfile -t nss < <(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^c$id-h[0-9]+$" || true)
  # The daemons and sshds by recorded pid: SIGTERM, then SIGKILL after the grace.
  for pid_file in "$state"/h*/pid "$state"/h*/sshd.pid; do
    [ -f "$pid_file" ] || continue
    i=${pid_file%/*}
    i=${i##*/h}
    pid=$(cat "$pid_file" 2>/dev/null || true)
    if ours "c$id-h$i" "$pid"; then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
  done
  if [ ${#pids[@]} -gt 0 ] && ! wait_dead "$GRACE_S" "${pids[@]}"; then
    for pid in "${pids[@]}"; do
      if alive "$pid"; then
        echo "netns-cluster: pid $pid ($(cat "/proc/$pid/comm" 2>/dev/null)) ignored SIGTERM for ${GRACE_S} s: SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
      fi
    done
    wait_dead 2 "${pids[@]}" || true
  fi
  # Whatever else runs inside the namespaces (workers of a SIGKILLed daemon, stray execs).
  for ns in "${nss[@]}"; do
    pids=()
    mapfile -t pids < <(ip netns pids "$ns" 2>/dev/null || true)
    if [ ${#pids[@]} -gt 0 ]; then
      kill -KILL "${pids[@]}" 2>/dev/null || true
      wait_dead 2 "${pids[@]}" || true
    fi
    ip netns del "$ns" 2>/dev/null || true
  done
  # Deleting a namespace deletes its veth pair; this catches half-made ones. Deleting the bridge
  # deletes its address (--sshd).
  for link in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 |
    grep -E "^cv${id}h[0-9]+$" || true); do
    ip link del "$link" 2>/dev/null || true
  done
  ip link del "cb$id" 2>/dev/null || true
  if is_uint "$id" && [ -n "$STATE_ROOT" ]; then
    rm -rf "${STATE_ROOT:?}/$id"
  fi
  rmdir "$STATE_ROOT" 2>/dev/null || true
}

# --- daemons --------------------------------------------------------------------------------

# Expands a word template ($2) for host $1 into the array `expanded`.
expand_args() {
  local word addr seed
  local -a words=()
  addr="$(ip_of "$1"):$PORT"
  seed="$(ip_of 1):$PORT"
  read -ra words <<<"$2"
  expanded=()
  for word in "${words[@]}"; do
    word=${word//\{addr\}/$addr}
    word=${word//\{ip\}/$(ip_of "$1")}
    word=${word//\{seed\}/$seed}
    word=${word//\{key\}/$STATE/cluster.key}
    expanded+=("$word")
  done
}

# Writes host $1's command line (NUL-separated) into its state dir.
write_argv() {
  local i=$1 dir="$STATE/h$1"
  local -a argv=("$BIN/circuitd" --name "h$i" --socket "$dir/circuitd.sock"
    --data-dir "$dir/data")
  local -a expanded=()
  expand_args "$i" "$LISTEN_ARGS"
  argv+=("${expanded[@]}")
  if [ "$i" -gt 1 ]; then
    expand_args "$i" "$JOIN_ARGS"
    argv+=("${expanded[@]}")
  fi
  argv+=("${EXTRA[@]}")
  printf '%s\0' "${argv[@]}" >"$dir/argv"
}

# Starts host $1's daemon in its namespace, detached, from its recorded command line.
launch() {
  local i=$1 dir="$STATE/h$1" pid
  local -a argv=()
  mapfile -d '' -t argv <"$dir/argv"
  # `ip netns exec` and `setsid` exec in place (no fork here), so $! is circuitd's pid.
  # NO_COLOR: a log file read in failure messages has no use for ANSI colours.
  NO_COLOR=1 setsid ip netns exec "$(ns_of "$i")" "${argv[@]}" </dev/null >>"$dir/circuitd.log" 2>&1 &
  pid=$!
  echo "$pid" >"$dir/pid"
}

# Waits until host $1's daemon answers `circuit status` on its socket.
wait_answers() {
  local i=$1 dir="$STATE/h$1" pid deadline
  pid=$(cat "$dir/pid")
  deadline=$(($(now_us) + START_DEADLINE_S * 1000000))
  until [ -S "$dir/circuitd.sock" ] &&
    "$BIN/circuit" --socket "$dir/circuitd.sock" status >/dev/null 2>&1; do
    if ! alive "$pid"; then
      echo "netns-cluster: h$i's circuitd (pid $pid) exited during startup; end of $dir/circuitd.log:" >&2
      tail -n 20 "$dir/circuitd.log" | sed 's/^/  | /' >&2
      exit 1
    fi
    if [ "$(now_us)" -ge "$deadline" ]; then
      echo "netns-cluster: h$i's circuitd (pid $pid) did not answer on $dir/circuitd.sock within ${START_DEADLINE_S} s; end of its log:" >&2
      tail -n 20 "$dir/circuitd.log" | sed 's/^/  | /' >&2
      exit 1
    fi
    sleep 0.05
  done
}

host_line() {
  local i=$1 pid
  pid=$(cat "$STATE/h$i/pid" 2>/dev/null || true)
  ours "$(ns_of "$i")" "$pid" || pid=-
  echo "h$i $(ip_of "$i") $STATE/h$i/circuitd.sock $pid"
}

# The host lines, then (--sshd) the sshd lines and the ssh line.
print_hosts() {
  local i pid
  for ((i = 1; i <= N; i++)); do
    host_line "$i"
  done
  [ "$WITH_SSHD" -eq 1 ] || return 0
  for ((i = 1; i <= N; i++)); do
    pid=$(cat "$STATE/h$i/sshd.pid" 2>/dev/null || true)
    ours "$(ns_of "$i")" "$pid" || pid=-
    echo "sshd h$i root@$(ip_of "$i") $pid"
  done
  echo "ssh $STATE/ssh/id_ed25519 $STATE/ssh/known_hosts"
}

# --- sshd -----------------------------------------------------------------------------------

# What --sshd needs that this machine lacks, as a sentence; empty if nothing.
sshd_missing() {
  local -a missing=()
  [ -x "$SSHD" ] || missing+=("OpenSSH's server ($SSHD is missing: apt-get install openssh-server)")
  command -v ssh >/dev/null || missing+=("the ssh client (apt-get install openssh-client)")
  command -v ssh-keygen >/dev/null || missing+=("ssh-keygen (apt-get install openssh-client)")
  command -v unshare >/dev/null || missing+=("unshare (util-linux)")
  if [ -x "$SSHD" ] && ! id sshd >/dev/null 2>&1; then
    missing+=("the user sshd (privilege separation; reinstall openssh-server)")
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    local joined
    joined=$(printf '; %s' "${missing[@]}")
    echo "--sshd needs ${joined:2}"
  fi
}

# The cluster's client key, and each host's key and sshd_config; known_hosts lists the hosts.
make_ssh_keys() {
  local i dir
  mkdir -p "$STATE/ssh"
  ssh-keygen -q -t ed25519 -N '' -C "netns-cluster-$ID" -f "$STATE/ssh/id_ed25519"
  cp "$STATE/ssh/id_ed25519.pub" "$STATE/ssh/authorized_keys"
  : >"$STATE/ssh/known_hosts"
  for ((i = 1; i <= N; i++)); do
    dir="$STATE/h$i"
    ssh-keygen -q -t ed25519 -N '' -C "h$i" -f "$dir/ssh_host_ed25519_key"
    echo "$(ip_of "$i") $(cut -d' ' -f1,2 "$dir/ssh_host_ed25519_key.pub")" >>"$STATE/ssh/known_hosts"
    cat >"$dir/sshd_config" <<CONFIG
# sshd of host h$i of netns cluster $ID (netns-cluster.sh): root, with the cluster's key only.
ListenAddress $(ip_of "$i"):22
HostKey $dir/ssh_host_ed25519_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $STATE/ssh/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
PrintLastLog no
MaxStartups 64
MaxSessions 64
Subsystem sftp internal-sftp
CONFIG
  done
}

# The ssh client, aimed at the cluster's hosts with its key and known_hosts only.
cluster_ssh() {
  ssh -F none -i "$STATE/ssh/id_ed25519" -o IdentitiesOnly=yes \
    -o UserKnownHostsFile="$STATE/ssh/known_hosts" -o GlobalKnownHostsFile=/dev/null \
    -o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=2 -o LogLevel=ERROR "$@"
}

# Starts host $1's sshd, detached: in the host's network namespace, its own UTS namespace
# (hostname h<i>) and its own mount namespace with an empty tmpfs on /opt.
launch_sshd() {
  local i=$1 dir="$STATE/h$1"
  # `setsid`, `ip netns exec`, `unshare` (without --fork) and `sh -c 'exec'` all exec in
  # place, so $! is sshd's pid.
  # shellcheck disable=SC2016 # $1..$3 are sh's own arguments
  setsid ip netns exec "$(ns_of "$i")" unshare --uts --mount --propagation private \
    sh -c 'echo "$1" >/proc/sys/kernel/hostname && mount -t tmpfs -o mode=755 tmpfs /opt &&
      exec "$2" -D -e -f "$3"' sh "h$i" "$SSHD" "$dir/sshd_config" \
    </dev/null >>"$dir/sshd.log" 2>&1 &
  echo "$!" >"$dir/sshd.pid"
}

# Waits until host $1's sshd lets the cluster's key in.
wait_sshd() {
  local i=$1 dir="$STATE/h$1" pid deadline
  pid=$(cat "$dir/sshd.pid")
  deadline=$(($(now_us) + START_DEADLINE_S * 1000000))
  until cluster_ssh "root@$(ip_of "$i")" true </dev/null >/dev/null 2>&1; do
    if ! alive "$pid"; then
      echo "netns-cluster: h$i's sshd (pid $pid) exited during startup; end of $dir/sshd.log:" >&2
      tail -n 20 "$dir/sshd.log" | sed 's/^/  | /' >&2
      exit 1
    fi
    if [ "$(now_us)" -ge "$deadline" ]; then
      echo "netns-cluster: h$i's sshd (pid $pid) did not let the cluster's key in within ${START_DEADLINE_S} s; ssh says:" >&2
      cluster_ssh "root@$(ip_of "$i")" true </dev/null 2>&1 | sed 's/^/  | /' >&2 || true
      echo "netns-cluster: end of $dir/sshd.log:" >&2
      tail -n 20 "$dir/sshd.log" | sed 's/^/  | /' >&2
      exit 1
    fi
    sleep 0.05
  done
}

# --- subcommands ----------------------------------------------------------------------------

cmd_up() {
  local n="" bin="$REPO/target/debug" i daemons=1 missing
  EXTRA=()
  WITH_SSHD=0
  while [ $# -gt 0 ]; do
    case $1 in
      --id) [ $# -ge 2 ] || usage_error "--id needs a value"; ID=$2; shift 2 ;;
      --bin) [ $# -ge 2 ] || usage_error "--bin needs a value"; bin=$2; shift 2 ;;
      --no-daemons) daemons=0; shift ;;
      --sshd) WITH_SSHD=1; shift ;;
      --) shift; EXTRA=("$@"); break ;;
      -*) usage_error "up: unknown option $1" ;;
      *) [ -z "$n" ] || usage_error "up: unexpected argument $1"; n=$1; shift ;;
    esac
  done
  [ -n "$n" ] || usage_error "up: how many hosts? (\`up N\`)"
  is_uint "$n" && [ "$n" -ge 1 ] && [ "$n" -le "$MAX_HOSTS" ] ||
    usage_error "up: N must be a number in 1..$MAX_HOSTS, got \"$n\""
  need_root
  if [ "$WITH_SSHD" -eq 1 ]; then
    missing=$(sshd_missing)
    [ -z "$missing" ] || die "up: $missing"
  fi
  [ -d "$bin" ] || die "--bin $bin is not a directory (build with \`cargo build --workspace --bins\`)"
  BIN=$(cd "$bin" && pwd)
  for i in circuitd circuit; do
    [ -x "$BIN/$i" ] || die "$BIN/$i is missing (build with \`cargo build --workspace --bins\`)"
  done
  N=$n
  umask 077

  # Claim an ID: its state dir is made with a plain mkdir, which only one caller wins.
  mkdir -p "$STATE_ROOT"
  if [ -n "${ID:-}" ]; then
    check_id "$ID"
    if ! id_free "$ID" || ! mkdir "$(state_of "$ID")" 2>/dev/null; then
      echo "netns-cluster: cluster ID $ID is in use (\`$0 down --id $ID\` removes it)" >&2
      exit 3
    fi
  else
    local tries=0
    ID=$(($$ % MAX_ID + 1))
    until id_free "$ID" && mkdir "$(state_of "$ID")" 2>/dev/null; do
      tries=$((tries + 1))
      [ "$tries" -lt "$MAX_ID" ] || die "every cluster ID is in use"
      ID=$((ID % MAX_ID + 1))
    done
  fi
  STATE=$(state_of "$ID")
  UP_DONE=0
  trap 'if [ "$UP_DONE" -eq 0 ]; then echo "netns-cluster: up failed; removing cluster $ID" >&2; teardown "$ID"; fi' EXIT
  trap 'exit 130' INT TERM
  printf 'n=%s\nbin=%s\nsshd=%s\n' "$N" "$BIN" "$WITH_SSHD" >"$STATE/meta"
  "$BIN/circuit" keygen "$STATE/cluster.key" >/dev/null

  local bridge
  bridge=$(bridge_of)
  ip link add "$bridge" type bridge
  ip link set dev "$bridge" addrgenmode none
  ip link set dev "$bridge" up
  for ((i = 1; i <= N; i++)); do
    local ns veth
    ns=$(ns_of "$i")
    veth=$(veth_of "$i")
    ip netns add "$ns"
    ip link add "$veth" type veth peer name eth0 netns "$ns"
    ip link set dev "$veth" addrgenmode none
    ip link set dev "$veth" master "$bridge" up
    ip -n "$ns" link set dev lo up
    ip -n "$ns" link set dev eth0 addrgenmode none
    ip -n "$ns" addr add "$(ip_of "$i")/24" dev eth0
    ip -n "$ns" link set dev eth0 up
    mkdir -p "$STATE/h$i/data"
    write_argv "$i"
  done

  if [ "$WITH_SSHD" -eq 1 ]; then
    ip addr add "$(ip_of "$BRIDGE_HOST")/24" dev "$bridge"
    # sshd's privilege separation directory.
    [ -d /run/sshd ] || install -d -m 0755 /run/sshd
    make_ssh_keys
    for ((i = 1; i <= N; i++)); do
      launch_sshd "$i"
    done
  fi
  if [ "$daemons" -eq 1 ]; then
    # h1 first: the others join it.
    launch 1
    wait_answers 1
    for ((i = 2; i <= N; i++)); do
      launch "$i"
    done
    for ((i = 2; i <= N; i++)); do
      wait_answers "$i"
    done
  fi
  if [ "$WITH_SSHD" -eq 1 ]; then
    for ((i = 1; i <= N; i++)); do
      wait_sshd "$i"
    done
  fi
  UP_DONE=1
  print_hosts
  echo "netns-cluster: cluster $ID is up ($N hosts on $(subnet_of "$ID").0/24); \`$0 down --id $ID\` removes it" >&2
}

cmd_down() {
  local all=0 id
  while [ $# -gt 0 ]; do
    case $1 in
      --id) [ $# -ge 2 ] || usage_error "--id needs a value"; ID=$2; shift 2 ;;
      --all) all=1; shift ;;
      *) usage_error "down: unexpected argument $1" ;;
    esac
  done
  need_root
  if [ "$all" -eq 1 ]; then
    for id in $(all_ids); do
      teardown "$id"
      echo "netns-cluster: cluster $id is down" >&2
    done
    return
  fi
  if [ -z "${ID:-}" ] && [ -z "${CIRCUIT_NETNS_ID:-}" ] && [ -z "$(all_ids)" ]; then
    return
  fi
  resolve_id
  check_id "$ID"
  teardown "$ID"
  echo "netns-cluster: cluster $ID is down" >&2
}

# Parses `I [--id ID]` for kill and start into HOST.
parse_host_args() {
  HOST=""
  while [ $# -gt 0 ]; do
    case $1 in
      --id) [ $# -ge 2 ] || usage_error "--id needs a value"; ID=$2; shift 2 ;;
      -*) usage_error "unknown option $1" ;;
      *) [ -z "$HOST" ] || usage_error "unexpected argument $1"; HOST=$1; shift ;;
    esac
  done
  [ -n "$HOST" ] || usage_error "which host? (a number, 1 for h1)"
  need_root
  resolve_id
  load_cluster
  check_host "$HOST"
}

cmd_kill() {
  parse_host_args "$@"
  local pid
  pid=$(cat "$STATE/h$HOST/pid" 2>/dev/null || true)
  ours "$(ns_of "$HOST")" "$pid" || die "h$HOST is not running"
  kill -KILL "$pid"
  wait_dead "$GRACE_S" "$pid" || die "h$HOST's circuitd (pid $pid) survived SIGKILL for ${GRACE_S} s"
}

cmd_start() {
  parse_host_args "$@"
  local pid
  pid=$(cat "$STATE/h$HOST/pid" 2>/dev/null || true)
  if ours "$(ns_of "$HOST")" "$pid"; then
    die "h$HOST is already running (pid $pid)"
  fi
  launch "$HOST"
  wait_answers "$HOST"
  host_line "$HOST"
}

# Sets the array GROUP to the host numbers of comma list $1, checked against N.
host_list() {
  local h
  [[ $1 =~ ^[0-9]+(,[0-9]+)*$ ]] ||
    usage_error "partition: \"$1\" is not a comma list of host numbers"
  IFS=, read -ra GROUP <<<"$1"
  for h in "${GROUP[@]}"; do
    check_host "$h"
  done
}

cmd_partition() {
  local -a groups=()
  local reject=0
  while [ $# -gt 0 ]; do
    case $1 in
      --id) [ $# -ge 2 ] || usage_error "--id needs a value"; ID=$2; shift 2 ;;
      --reject) reject=1; shift ;;
      -*) usage_error "partition: unknown option $1" ;;
      *) groups+=("$1"); shift ;;
    esac
  done
  [ ${#groups[@]} -eq 2 ] || usage_error "partition needs two groups, e.g. \`partition 1,2 3\`"
  need_root
  resolve_id
  load_cluster
  local -a a b
  host_list "${groups[0]}"
  a=("${GROUP[@]}")
  host_list "${groups[1]}"
  b=("${GROUP[@]}")
  local x y
  for x in "${a[@]}"; do
    for y in "${b[@]}"; do
      [ "$x" != "$y" ] || usage_error "partition: host $x is in both groups"
    done
  done
  for x in "${a[@]}"; do
    for y in "${b[@]}"; do
      cut_link "$x" "$y" "$reject"
      cut_link "$y" "$x" "$reject"
    done
  done
}

# Stops host $1 from sending to host $2: blackhole route if $3 is 1, else $2's address resolves
# to a MAC that no port of the bridge has.
cut_link() {
  if [ "$3" -eq 1 ]; then
    ip -n "$(ns_of "$1")" route replace blackhole "$(ip_of "$2")/32"
  else
    ip -n "$(ns_of "$1")" neigh replace "$(ip_of "$2")" lladdr "$NOBODY_MAC" nud permanent dev eth0
  fi
}

cmd_heal() {
  while [ $# -gt 0 ]; do
    case $1 in
      --id) [ $# -ge 2 ] || usage_error "--id needs a value"; ID=$2; shift 2 ;;
      *) usage_error "heal: unexpected argument $1" ;;
    esac
  done
  need_root
  resolve_id
  load_cluster
  local i
  for ((i = 1; i <= N; i++)); do
    ip -n "$(ns_of "$i")" route flush type blackhole
    ip -n "$(ns_of "$i")" neigh flush nud permanent dev eth0
  done
}

cmd_exec() {
  HOST=""
  while [ $# -gt 0 ] && [ -z "$HOST" ]; do
    case $1 in
      --id) [ $# -ge 2 ] || usage_error "--id needs a value"; ID=$2; shift 2 ;;
      -*) usage_error "exec: unknown option $1 (options go before the host number)" ;;
      *) HOST=$1; shift ;;
    esac
  done
  [ -n "$HOST" ] || usage_error "exec: which host? (\`exec I CMD...\`)"
  [ "${1:-}" != "--" ] || shift
  [ $# -gt 0 ] || usage_error "exec: what command? (\`exec I CMD...\`)"
  need_root
  resolve_id
  load_cluster
  check_host "$HOST"
  CIRCUIT_SOCKET="$STATE/h$HOST/circuitd.sock" exec ip netns exec "$(ns_of "$HOST")" "$@"
}

cmd_list() {
  while [ $# -gt 0 ]; do
    case $1 in
      --id) [ $# -ge 2 ] || usage_error "--id needs a value"; ID=$2; shift 2 ;;
      *) usage_error "list: unexpected argument $1" ;;
    esac
  done
  need_root
  resolve_id
  load_cluster
  print_hosts
}

# Makes and removes a namespace, a veth into it and a bridge; with --sshd, checks what sshd
# needs too (without, only notes it).
cmd_check() {
  local sshd=0 missing
  while [ $# -gt 0 ]; do
    case $1 in
      --sshd) sshd=1; shift ;;
      *) usage_error "check: unexpected argument $1" ;;
    esac
  done
  need_root
  missing=$(sshd_missing)
  if [ -n "$missing" ]; then
    [ "$sshd" -eq 0 ] || die "check: $missing"
    echo "netns-cluster: note: clusters work, but $missing" >&2
  fi
  PROBE_NS="c0-probe$$"
  PROBE_BRIDGE="cb0p$$"
  local veth="cv0p$$"
  trap 'ip netns del "$PROBE_NS" 2>/dev/null || true; ip link del "$PROBE_BRIDGE" 2>/dev/null || true' EXIT
  ip netns add "$PROBE_NS" || die "cannot create a network namespace"
  ip link add "$PROBE_BRIDGE" type bridge || die "cannot create a bridge"
  ip link add "$veth" type veth peer name eth0 netns "$PROBE_NS" || die "cannot create a veth pair"
  ip link set dev "$veth" master "$PROBE_BRIDGE" || die "cannot attach a veth to a bridge"
  ip -n "$PROBE_NS" route add blackhole 10.255.255.1/32 || die "cannot add a blackhole route"
}

main() {
  [ $# -gt 0 ] || {
    usage >&2
    exit 2
  }
  local cmd=$1
  shift
  ID=""
  case $cmd in
    -h | --help | help) usage ;;
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    kill) cmd_kill "$@" ;;
    start) cmd_start "$@" ;;
    partition) cmd_partition "$@" ;;
    heal) cmd_heal "$@" ;;
    exec) cmd_exec "$@" ;;
    list) cmd_list "$@" ;;
    check) cmd_check "$@" ;;
    *) usage_error "unknown command \"$cmd\"" ;;
  esac
}

main "$@"
