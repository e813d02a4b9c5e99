#!/usr/bin/env bash
# bench/scale.sh: how the cluster behaves as it grows. For each N in
# SCALE_NS it starts N real cmd/node processes on loopback, node i on
# 127.0.0.(SCALE_IP0+i) with the same three ports, all with one cluster
# key, and measures:
#   formation    the seed is started and ready, then the other N-1 at once;
#                until every node's ring holds all N members
#   admin writes SCALE_WRITES POSTs to /system/health (DEGRADED and NORMAL
#                in turn, each to another node): until every other node
#                logged that it adopted that version (each within 20 s)
#   idle         resident memory, goroutines and CPU per node over
#                SCALE_IDLE_S with no load (gossip alone)
#   load         SCALE_RATE req/s in total, the same at every N, round-robin
#                over all N nodes' HTTP addresses, on SCALE_KEYS enterprise
#                keys whose limit never binds: memory and goroutines during
#                it, CPU, and from the nodes' metrics the share of checks
#                that paid a round trip to the key's owner, against the same
#                load on bench/floor (one process, no limiter)
#   kill -9      of node N/2: until every survivor's ring is without it
#   leave        SIGTERM to node N/2+1: until it is out of every ring, every
#                node heard it left, and its process exited
# and times ring.Ring.Set at each N. Times come from the nodes' own
# JSON logs (stamped to the nanosecond, on the same clock as the script),
# so the measurements poll files, not the nodes. bench/scale (the helper)
# waits, scrapes and writes the table.
#
#   bench/scale.sh          about 5 minutes for 10, 30 and 60 nodes: writes
#                           the table into docs/scale.md
#   SCALE_NS=10 bench/scale.sh
#                           one size, about 1.5 minutes (what CI could run):
#                           results stay in bench/out/scale
#
# Everything shares the machine's CPUs: N nodes, loadgen, and whatever else
# runs there. Exit status 1 if a wait ran out, the load saw errors, or a
# node died or crashed (the table is written all the same).
#
# Environment (all optional):
#   SCALE_NS        cluster sizes, in order (default "10 30 60")
#   SCALE_PORT      HTTP port of every node (default 24180); gRPC +1, gossip +2
#   SCALE_IP0       node i listens on 127.0.0.(SCALE_IP0+i) (default 10);
#                   the floor on 127.0.0.(SCALE_IP0-1)
#   SCALE_RATE      total requests per second of the load (default 200)
#   SCALE_C         loadgen workers (default 16)
#   SCALE_KEYS      enterprise keys the load spreads over (default 10: one
#                   node sees one key every N*KEYS/RATE s, 0.5 s at N = 10,
#                   3 s at N = 60, against a lease of 1 s)
#   SCALE_WARM_S    warm-up before the measured load, same keys (default 3)
#   SCALE_LOAD_S    measured load (default 15)
#   SCALE_SETTLE_S  pause after formation before the idle window (default 5)
#   SCALE_IDLE_S    idle window (default 20)
#   SCALE_WRITES    admin writes per N (default 6)
#   SCALE_WAIT_S    deadline of each wait on the cluster (default 60)
#   SCALE_MAX_S     the whole run: past it the script stops everything (default 1200)
#   SCALE_QUIET_WAIT before the floor and before each N, how long to wait at
#                   most for other programs to leave the CPUs (default 60)
#   SCALE_MAX_OTHERS the share of the machine (%) they may keep (default 15);
#                   an idle window or a load they took more of is done again
#                   once, and the cleaner of the two kept
#   SCALE_NODE_FLAGS more flags for every node, such as "-lease-ttl -1s"
#   SCALE_GO_BENCH  1 (default) also runs package ring's BenchmarkRingSet; 0 skips it
#   SCALE_OUT       run directory (default bench/out/scale)
#   SCALE_DOC       doc to write the table into (default docs/scale.md when
#                   SCALE_NS is the default, else none; empty: none)
# Needs go and curl; ss (iproute2), if there, checks the ports are free.
# Every process it starts is stopped on exit (an EXIT trap, by PID).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)

case "${1:-}" in
  "") ;;
  -h|--help) sed -n '2,/^set -euo/{/^set -euo/!p}' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "bench/scale.sh: unknown argument $1 (want nothing, or -h)" >&2; exit 2 ;;
esac

DEFAULT_NS="10 30 60"
read -r -a NS <<<"${SCALE_NS:-$DEFAULT_NS}"
PORT=${SCALE_PORT:-24180}
IP0=${SCALE_IP0:-10}
RATE=${SCALE_RATE:-200}
C=${SCALE_C:-16}
KEYS=${SCALE_KEYS:-10}
WARM_S=${SCALE_WARM_S:-3}
LOAD_S=${SCALE_LOAD_S:-15}
SETTLE_S=${SCALE_SETTLE_S:-5}
IDLE_S=${SCALE_IDLE_S:-20}
WRITES=${SCALE_WRITES:-6}
WAIT_S=${SCALE_WAIT_S:-60}
MAX_S=${SCALE_MAX_S:-1200}
QUIET_WAIT=${SCALE_QUIET_WAIT:-60}
MAX_OTHERS=${SCALE_MAX_OTHERS:-15}
GO_BENCH=${SCALE_GO_BENCH:-1}
OUT=${SCALE_OUT:-$ROOT/bench/out/scale}
if [ "${SCALE_DOC+set}" = set ]; then
  DOC=$SCALE_DOC
elif [ "${NS[*]}" = "$DEFAULT_NS" ]; then
  DOC=$ROOT/docs/scale.md
else
  DOC=""
fi
TOKEN="scale-admin-$$-$RANDOM$RANDOM"
CLUSTER_SECRET="scale-key-$$-$RANDOM$RANDOM$RANDOM"
ENTERPRISE_LIMIT=1000 # config/tiers.json: enterprise, per 60 s window

BIN=$OUT/bin
T0=$(date +%s)

log() { printf '%s scale: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

# now_ms prints the time in Unix milliseconds.
now_ms() {
  local s=${EPOCHREALTIME%[.,]*} f=${EPOCHREALTIME#*[.,]}
  echo $((s * 1000 + 10#${f:0:3}))
}

# sleep_until MS sleeps until the time MS (from now_ms), if it is ahead.
sleep_until() {
  local d=$(($1 - $(now_ms)))
  if [ "$d" -gt 0 ]; then sleep "$((d / 1000)).$(printf '%03d' $((d % 1000)))"; fi
}

for c in go curl; do command -v "$c" >/dev/null || die "needs $c on PATH"; done
[ -n "${EPOCHREALTIME:-}" ] || die "needs bash 5 (EPOCHREALTIME)"
for n in "${NS[@]}"; do
  case $n in '' | *[!0-9]*) die "SCALE_NS: $n is not a whole number" ;; esac
  [ "$n" -ge 3 ] || die "SCALE_NS: $n: want at least 3 nodes (one is killed, one leaves)"
  [ $((IP0 + n - 1)) -le 254 ] || die "SCALE_NS: $n nodes from 127.0.0.$IP0 do not fit in 127.0.0.0/24"
done
[ "$IP0" -ge 2 ] || die "SCALE_IP0: want at least 2 (the floor takes SCALE_IP0-1)"
[ "$LOAD_S" -ge 4 ] || die "SCALE_LOAD_S: want at least 4"
# Every key must stay under its limit for the whole load, a second try of
# it included, so no check is ever refused and every one is a full check.
per_key=$(( RATE * (WARM_S + 2 * LOAD_S) / KEYS ))
[ "$per_key" -lt "$ENTERPRISE_LIMIT" ] ||
  die "SCALE_RATE $RATE for $((WARM_S + 2 * LOAD_S)) s over $KEYS keys is $per_key hits per key, over the enterprise limit $ENTERPRISE_LIMIT: raise SCALE_KEYS"

# The node reads these variables for flags not given; none may leak in.
unset CONFIG HTTP_ADDR GRPC_ADDR GOSSIP_ADDR JOIN ADVERTISE_ADDR NODE_NAME ADMIN_TOKEN CLUSTER_KEY \
  INSECURE_OPEN_CLUSTER FORWARD_TIMEOUT FORWARD_TIMEOUT_MIN FORWARD_TIMEOUT_MAX LEASE_TTL MAX_KEYS \
  BACKUP_INTERVAL QUORUM_GRACE STATE_FILE MAX_CLOCK_OFFSET SHUTDOWN_GRACE LOG_LEVEL LOG_FORMAT NODE_NAME_FROM_DNS

# ---------------------------------------------------------------- processes

# LIVE maps the PID of every process started and not yet reaped to its
# name; a PID leaves it once waited for, so no reused PID is ever signalled.
declare -A LIVE=()
WATCHDOG=""

# reap PID: waits for PID, which has exited or been killed, and forgets it.
reap() {
  { wait "$1"; } 2>/dev/null || true
  unset "LIVE[$1]"
}

# stop_pids SIGNAL PID...: sends SIGNAL, waits up to 10 s for them to exit,
# then kills what is left, and reaps them all.
stop_pids() {
  local sig=$1 pid deadline
  shift
  [ $# -gt 0 ] || return 0
  # (stderr off: bash's own "Killed" lines about the jobs.)
  {
    for pid in "$@"; do kill "-$sig" "$pid" || true; done
    deadline=$((SECONDS + 10))
    for pid in "$@"; do
      while kill -0 "$pid" && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
      kill -KILL "$pid" || true
      reap "$pid"
    done
  } 2>/dev/null
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ -n "$WATCHDOG" ] && { kill "$WATCHDOG" 2>/dev/null || true; wait "$WATCHDOG" 2>/dev/null || true; }
  if [ ${#LIVE[@]} -gt 0 ]; then
    log "stopping ${#LIVE[@]} processes"
    stop_pids TERM "${!LIVE[@]}"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The whole run is bounded: past MAX_S the watchdog stops the script, whose
# EXIT trap stops everything it started.
(
  end=$(($(date +%s) + MAX_S))
  while [ "$(date +%s)" -lt "$end" ]; do sleep 1; done
  log "the run took more than SCALE_MAX_S=$MAX_S s: stopping"
  kill -TERM $$
) &
WATCHDOG=$!

# port_free PORT: fails if something listens on PORT, on any address.
port_free() {
  command -v ss >/dev/null || return 0
  ! ss -Hltun "( sport = :$1 )" 2>/dev/null | grep -q .
}

# wait_url NAME PID URL: polls URL until it answers 2xx, for at most 20 s.
wait_url() {
  local deadline=$((SECONDS + 20))
  until curl -fsS --max-time 1 "$3" >/dev/null 2>&1; do
    kill -0 "$2" 2>/dev/null || die "$1 exited; see its log"
    [ $SECONDS -lt $deadline ] || die "$1 not ready at $3 after 20 s"
    sleep 0.1
  done
}

# ---------------------------------------------------------------- set-up

rm -rf "$OUT"
mkdir -p "$BIN"
BIN=$(cd "$BIN" && pwd) # absolute, for the build inside bench/ (SCALE_OUT may be relative)
log "building into $BIN"
go build -trimpath -o "$BIN/node" ./cmd/node
# The tools are the bench module's (bench/go.mod), built from inside it.
(cd bench && go build -trimpath -o "$BIN/" ./loadgen ./floor ./scale)
NODE=$BIN/node LOADGEN=$BIN/loadgen SCALE=$BIN/scale

for p in "$PORT" $((PORT + 1)) $((PORT + 2)); do
  port_free "$p" || die "port $p is in use on some address: set SCALE_PORT to another"
done

TIERS=$OUT/tiers.json
"$LOADGEN" -config config/tiers.json -gen-config "$TIERS" -gen-keys "$KEYS" >/dev/null
LOAD_ARGS=(-config "$TIERS" -mix enterprise=100 -keys "$KEYS" -c "$C" -rate "$RATE" -quiet -json)
LOADAVG_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "-")

# quiet WHAT: waits (QUIET_WAIT at most) for other programs to leave the
# CPUs before WHAT, when none of ours run, and notes how busy it was.
quiet() {
  local r
  r=$("$SCALE" quiet -max "$MAX_OTHERS" -wait "${QUIET_WAIT}s" 2>&1)
  log "before $1: $r"
  QUIET_NOTES+="${QUIET_NOTES:+, }$1: ${r%%;*}"
}
QUIET_NOTES=""

# Ring rebuilds first, on a machine our processes do not load yet.
quiet "the ring timings"
log "timing Ring.Set at ${NS[*]} members"
"$SCALE" ring -n "${NS[*]}" -out "$OUT/ring.json"
if [ "$GO_BENCH" = 1 ]; then
  log "go test -bench RingSet ./ring (members 10, 50, 100)"
  timeout 300 go test -run '^$' -bench 'RingSet/members=(10|50|100)$' -count 1 ./ring >"$OUT/ringbench.txt" 2>&1 ||
    log "BenchmarkRingSet failed; see $OUT/ringbench.txt"
fi

# keep DIR TRY FILE...: the files of try TRY (DIR/FILE.tTRY.json) become
# DIR/FILE.json, the measurement kept.
keep() {
  local dir=$1 try=$2 f
  shift 2
  for f in "$@"; do cp "$dir/$f.t$try.json" "$dir/$f.json"; done
}

# load_window DIR PREFIX TARGETS PROCS [SNAP-ARGS...]: the measured load on
# TARGETS, with snapshots (SNAP-ARGS: -nodes FILE, or none) as it starts,
# half-way and 2 s before it ends, so that loadgen (and PROCS, name=pid,...)
# can still be read: DIR/PREFIX0, PREFIXmid, PREFIX1 and the loadgen
# report DIR/PREFIX.json. If other programs took more than MAX_OTHERS% of
# the machine, it runs again once and keeps the cleaner run.
load_window() {
  local dir=$1 prefix=$2 targets=$3 extra=$4 try o best="" best_o=0 t0 lg procs seen=""
  shift 4
  for try in 1 2; do
    t0=$(now_ms)
    "$LOADGEN" "${LOAD_ARGS[@]}" -targets "$targets" -d "${LOAD_S}s" >"$dir/$prefix.t$try.json" 2>>"$dir/loadgen.log" &
    lg=$!
    LIVE[$lg]=loadgen
    procs="loadgen=$lg${extra:+,$extra}"
    "$SCALE" snap "$@" -procs "$procs" -out "$dir/${prefix}0.t$try.json"
    sleep_until $((t0 + LOAD_S * 500))
    "$SCALE" snap "$@" -procs "$procs" -out "$dir/${prefix}mid.t$try.json"
    sleep_until $((t0 + LOAD_S * 1000 - 2000))
    "$SCALE" snap "$@" -procs "$procs" -out "$dir/${prefix}1.t$try.json"
    wait "$lg" || log "loadgen exited with an error; see $dir/loadgen.log"
    unset "LIVE[$lg]"
    o=$("$SCALE" others -a "$dir/${prefix}0.t$try.json" -b "$dir/${prefix}1.t$try.json")
    seen+="${seen:+, then }$o%"
    if [ -z "$best" ] || [ "$o" -lt "$best_o" ]; then best=$try best_o=$o; fi
    [ "$o" -le "$MAX_OTHERS" ] && break
    log "other programs took $o% of the machine during the load ($prefix, try $try)"
  done
  retried "$dir" "$prefix load" "$try" "$best" "$seen"
  keep "$dir" "$best" "$prefix" "${prefix}0" "${prefix}mid" "${prefix}1"
}

# retried DIR WHAT TRIES KEPT SEEN: notes in DIR/notes.txt that WHAT was
# measured TRIES times because other programs took SEEN of the machine.
retried() {
  [ "$3" -gt 1 ] || return 0
  local which=first
  [ "$4" = 2 ] && which=second
  echo "$2 measured twice: other programs took $5 of the machine; the $which kept" >>"$1/notes.txt"
}

# idle_window DIR: snapshots DIR/idle0 and idle1, IDLE_S apart; done again
# once if other programs took more than MAX_OTHERS% of the machine.
idle_window() {
  local dir=$1 try o best="" best_o=0 seen=""
  for try in 1 2; do
    "$SCALE" snap -nodes "$dir/nodes.tsv" -out "$dir/idle0.t$try.json"
    sleep "$IDLE_S"
    "$SCALE" snap -nodes "$dir/nodes.tsv" -out "$dir/idle1.t$try.json"
    o=$("$SCALE" others -a "$dir/idle0.t$try.json" -b "$dir/idle1.t$try.json")
    seen+="${seen:+, then }$o%"
    if [ -z "$best" ] || [ "$o" -lt "$best_o" ]; then best=$try best_o=$o; fi
    [ "$o" -le "$MAX_OTHERS" ] && break
    log "other programs took $o% of the machine during the idle window (try $try)"
  done
  retried "$dir" "the idle window" "$try" "$best" "$seen"
  keep "$dir" "$best" idle0 idle1
}

# The floor: one bare process, the same load.
quiet floor
log "floor: bench/floor at $RATE req/s for ${WARM_S}+${LOAD_S} s"
FLOOR_URL="http://127.0.0.$((IP0 - 1)):$PORT"
mkdir -p "$OUT/floor"
"$BIN/floor" -http-addr "127.0.0.$((IP0 - 1)):$PORT" -config "$TIERS" -node-name floor >"$OUT/floor/floor.log" 2>&1 &
floor_pid=$!
LIVE[$floor_pid]=floor
wait_url floor "$floor_pid" "$FLOOR_URL/readyz"
"$LOADGEN" "${LOAD_ARGS[@]}" -targets "$FLOOR_URL" -d "${WARM_S}s" >/dev/null 2>>"$OUT/loadgen.log" || true
load_window "$OUT" floor "$FLOOR_URL" "floor=$floor_pid"
stop_pids TERM "$floor_pid"

# ---------------------------------------------------------------- one size

# name I prints node I's name; ip I its address.
name() { printf 's%02d' "$1"; }
ip() { echo "127.0.0.$((IP0 + $1))"; }

# start_node I: node I, logging to $D/logs, joining the seed (node 0)
# unless it is the seed; its PID goes to NODE_PIDS[I].
NODE_PIDS=()
start_node() {
  local i=$1 a
  a=$(ip "$i")
  local args=(-config "$TIERS" -node-name "$(name "$i")" -admin-token "$TOKEN" -cluster-key "$CLUSTER_SECRET"
    -log-format json -shutdown-grace 2s
    -http-addr "$a:$PORT" -grpc-addr "$a:$((PORT + 1))" -gossip-addr "$a:$((PORT + 2))")
  if [ "$i" -gt 0 ]; then args+=(-join "$(ip 0):$((PORT + 2))"); fi
  # shellcheck disable=SC2086 # split on purpose: a list of flags
  "$NODE" "${args[@]}" ${SCALE_NODE_FLAGS:-} >"$D/logs/$(name "$i").log" 2>&1 &
  NODE_PIDS[i]=$!
  LIVE[$!]=$(name "$i")
}

# run_size N: the whole measurement at N nodes, into $OUT/nN (D).
run_size() {
  local n=$1 d=$OUT/n$1 i since targets="" v l vname lname
  D=$d
  NODE_PIDS=()
  mkdir -p "$d/logs"
  : >"$d/nodes.tsv"
  for ((i = 0; i < n; i++)); do
    printf '%s\thttp://%s:%s\t%s\n' "$(name $i)" "$(ip $i)" "$PORT" "$d/logs/$(name $i).log" >>"$d/nodes.tsv"
    targets+="${targets:+,}http://$(ip $i):$PORT"
  done
  for p in "$PORT" $((PORT + 1)) $((PORT + 2)); do
    port_free "$p" || die "port $p is still in use before N = $n"
  done

  quiet "N = $n"
  "$SCALE" snap -out "$d/start.json"
  log "N = $n: the seed, then $((n - 1)) nodes at once"
  start_node 0
  wait_url "$(name 0)" "${NODE_PIDS[0]}" "http://$(ip 0):$PORT/readyz"
  since=$(now_ms)
  for ((i = 1; i < n; i++)); do start_node "$i"; done
  "$SCALE" members -nodes "$d/nodes.tsv" -since "$since" -timeout "${WAIT_S}s" -out "$d/formation.json"
  log "N = $n: formed; settling ${SETTLE_S} s, then ${IDLE_S} s idle"

  sleep "$SETTLE_S"
  idle_window "$d"

  log "N = $n: $WRITES admin writes"
  "$SCALE" health -nodes "$d/nodes.tsv" -token "$TOKEN" -writes "$WRITES" -timeout 20s -out "$d/health.json" ||
    log "N = $n: admin writes failed; the table says so"

  log "N = $n: load, $RATE req/s over $n nodes (${WARM_S} s warm-up, ${LOAD_S} s measured)"
  "$LOADGEN" "${LOAD_ARGS[@]}" -targets "$targets" -d "${WARM_S}s" >"$d/warm.json" 2>>"$d/loadgen.log" || true
  load_window "$d" load "$targets" "" -nodes "$d/nodes.tsv"

  v=$((n / 2)) l=$((n / 2 + 1))
  vname=$(name $v) lname=$(name $l)
  log "N = $n: kill -9 $vname"
  since=$(now_ms)
  kill -KILL "${NODE_PIDS[$v]}"
  reap "${NODE_PIDS[$v]}"
  "$SCALE" members -nodes "$d/nodes.tsv" -since "$since" -gone "$vname" -timeout "${WAIT_S}s" -out "$d/kill.json"

  log "N = $n: SIGTERM $lname (graceful leave)"
  since=$(now_ms)
  kill -TERM "${NODE_PIDS[$l]}"
  "$SCALE" members -nodes "$d/nodes.tsv" -since "$since" -gone "$vname,$lname" -left "$lname" -exit "$lname" \
    -timeout "${WAIT_S}s" -out "$d/leave.json"
  stop_pids TERM "${NODE_PIDS[$l]}" # it has exited, or gets 10 s more

  "$SCALE" snap -out "$d/end.json"
  "$SCALE" events -nodes "$d/nodes.tsv" -killed "$vname,$lname" -out "$d/events.json"
  : >"$d/died.txt"
  for ((i = 0; i < n; i++)); do
    if [ "$i" = "$v" ] || [ "$i" = "$l" ]; then continue; fi
    kill -0 "${NODE_PIDS[$i]}" 2>/dev/null || { echo "$(name "$i")" >>"$d/died.txt"; reap "${NODE_PIDS[$i]}"; }
  done
  # The rest are not measured stopping: SIGKILL ends them at once, where a
  # SIGTERM to all would make each hand its keys to members leaving too.
  local rest=()
  for ((i = 0; i < n; i++)); do
    if [ -n "${LIVE[${NODE_PIDS[$i]}]:-}" ]; then rest+=("${NODE_PIDS[$i]}"); fi
  done
  stop_pids KILL "${rest[@]}"
  log "N = $n: done"
}

for n in "${NS[@]}"; do run_size "$n"; done

# ---------------------------------------------------------------- the table

dirty=""
[ -n "$(git status --porcelain 2>/dev/null)" ] && dirty=" + uncommitted changes"
model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -n 1)
{
  echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "machine=$(getconf _NPROCESSORS_ONLN 2>/dev/null || nproc) CPUs${model:+ ($model)}, $(uname -sr), shared by all N nodes, loadgen and the helper"
  echo "go=$(go env GOVERSION)"
  echo "code=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$dirty"
  echo "nodes=cmd/node on 127.0.0.$IP0 and up, one cluster key, default flags${SCALE_NODE_FLAGS:+ plus $SCALE_NODE_FLAGS}"
  echo "load=$RATE req/s in total at every N, round-robin over all N nodes, c = $C, $KEYS enterprise keys (L = $ENTERPRISE_LIMIT/min, never binding), ${WARM_S} s warm-up then ${LOAD_S} s measured"
  echo "idle window=${IDLE_S} s, ${SETTLE_S} s after formation"
  echo "admin writes=$WRITES per N"
  echo "before each part (waiting up to ${QUIET_WAIT} s for at most ${MAX_OTHERS}% busy)=$QUIET_NOTES"
  echo "load average (1/5/15 min)=$LOADAVG_BEFORE before, $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "-") after"
  echo "run=$(($(date +%s) - T0)) s"
} >"$OUT/meta.txt"

rc=0
doc_args=()
[ -n "$DOC" ] && doc_args=(-doc "$DOC")
"$SCALE" table -dir "$OUT" -ns "${NS[*]}" -meta "$OUT/meta.txt" -out "$OUT/results.md" "${doc_args[@]}" || rc=$?
log "results: $OUT/results.md${DOC:+, and $DOC}; run directory $OUT; $(($(date +%s) - T0)) s"
exit $rc
