#!/usr/bin/env bash
# bench/run.sh: tierlimit against a central Redis and against no limiter at
# all, on loopback, in one run.
#
#   bench/run.sh            full run (about 8 minutes on an idle machine; on a
#                           shared one it waits for other programs, a minute at
#                           most per run): writes the results section of
#                           docs/benchmark.md
#   bench/run.sh --quick    smoke test (about 3 minutes): results stay in bench/out/run
#   bench/run.sh --profile  CPU profile of node n1 of a cluster under load
#                           (bench/out/profile); touches no results.
#                           PROFILE_NODES (1 or 3, default 3), PROFILE_C
#                           (default 64) and PROFILE_LOAD (enterprise or
#                           mixed) choose the cluster and the load.
#
# Starts, all on 127.0.0.1: the floor (bench/floor: the same GET /test, no
# limiter), a redis-server, three bench/redisnode processes sharing it (the
# real middleware, one EVALSHA round trip per request), one standalone
# cmd/node and two 3-node cmd/node clusters: one with default flags, one
# with BENCH_ALT_NODE_FLAGS (by default the design without leases and with
# a fixed 5 ms forward deadline, for a before/after in the same run). Then,
# for c = 1 and c = 64 and for two loads, runs bench/loadgen against each
# configuration for a fixed time with its own fresh keys:
#   enterprise  500 enterprise keys (L = 1500/min): the limit never binds,
#               so every request is a full check;
#   mixed       60% free, 30% pro, 10% enterprise requests, 100 keys of each:
#               free keys spend their 20 in the first second, so most of
#               their requests are refusals.
# and one accuracy run per limiter configuration. Every process it
# starts is stopped on exit. Needs go, curl, and redis-server (installed with
# apt-get when missing and running as root). A full run writes
# the results section of docs/benchmark.md (between its bench markers).
#
# Environment: BENCH_PORT (default 23400) is the first of the loopback ports
# used, BENCH_PORT .. BENCH_PORT+60. BENCH_NODE_FLAGS, if set, are more
# flags for every cmd/node (such as "-backup-interval 1h", to measure what
# the backups cost). BENCH_ALT_NODE_FLAGS (default "-lease-ttl -1s
# -forward-timeout 5ms") are the second cluster's; empty skips it.
# BENCH_QUIET_WAIT (default 60) is how long a full run waits before each
# measured run for other programs to leave the CPUs; BENCH_MAX_OTHERS
# (default 15) the share of the machine other programs may take during a
# run before it is redone (once; the cleaner of the two is kept).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)

MODE=full
case "${1:-}" in
  "") ;;
  --quick) MODE=quick ;;
  --profile) MODE=profile ;;
  -h|--help) sed -n '2,/^set -euo/{/^set -euo/!p}' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "bench/run.sh: unknown argument $1 (want --quick, --profile or nothing)" >&2; exit 2 ;;
esac

case $MODE in
  full)    DUR=10s; WARM=2s ;;
  quick)   DUR=3s;  WARM=1s ;;
  profile) DUR=12s; WARM=2s ;;
esac
LOAD_KEYS=500                    # enterprise keys per enterprise load run (L = 1500 each): the limit never binds
MIXED_KEYS=100                   # keys per tier per mixed load run
MIXED_MIX=free=60,pro=30,enterprise=10
LOADS=(enterprise mixed)
ACC_KEYS=5                       # accuracy keys per tier per accuracy run
ACC_REQUESTS=20000               # per accuracy run: about 400 per free key (L=20), 1200 per pro (L=150), 2400 per enterprise (L=1500)
CONCURRENCY=(1 64)
ALT_FLAGS=${BENCH_ALT_NODE_FLAGS--lease-ttl -1s -forward-timeout 5ms}
CONFIGS=(floor floor3 redis1 redis3 tl1 tl3)
[ -n "$ALT_FLAGS" ] && CONFIGS+=(tl3b)
TOKEN=bench-admin-token
TL_FLAGS=(-admin-token "$TOKEN" -log-format json)
# shellcheck disable=SC2206 # split on purpose: a list of flags
[ -n "${BENCH_NODE_FLAGS:-}" ] && TL_FLAGS+=($BENCH_NODE_FLAGS)

OUT=$ROOT/bench/out
BIN=$OUT/bin
RUN=$OUT/run
[ "$MODE" = profile ] && RUN=$OUT/profile
LOGS=$RUN/logs
PORT=${BENCH_PORT:-23400}

log() { printf '%s bench: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

# ---------------------------------------------------------------- processes

PIDS=()
NAMES=()

# start NAME CMD...: runs CMD in the background, logging to $LOGS/NAME.log.
start() {
  local name=$1; shift
  "$@" >"$LOGS/$name.log" 2>&1 &
  PIDS+=($!)
  NAMES+=("$name")
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ ${#PIDS[@]} -gt 0 ]; then
    log "stopping ${#PIDS[@]} processes"
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    local deadline=$((SECONDS + 10))
    for pid in "${PIDS[@]}"; do
      while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
      if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
      wait "$pid" 2>/dev/null || true
    done
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# alive NAME: fails, with the end of its log, if the process NAME has exited.
alive() {
  local i
  for i in "${!NAMES[@]}"; do
    if [ "${NAMES[$i]}" = "$1" ]; then
      kill -0 "${PIDS[$i]}" 2>/dev/null && return 0
      log "$1 exited; end of $LOGS/$1.log:"; tail -n 20 "$LOGS/$1.log" >&2
      return 1
    fi
  done
  return 1
}

# wait_ready NAME URL: polls URL until it answers 2xx, for at most 20 s.
wait_ready() {
  local name=$1 url=$2 deadline=$((SECONDS + 20))
  until curl -fsS --max-time 1 "$url" >/dev/null 2>&1; do
    alive "$name" || die "$name did not start"
    [ $SECONDS -lt $deadline ] || { tail -n 20 "$LOGS/$name.log" >&2; die "$name not ready at $url after 20 s"; }
    sleep 0.1
  done
}

# wait_members N URL...: polls each node's /system/cluster until it lists N
# alive members, for at most 20 s.
wait_members() {
  local want=$1; shift
  local deadline=$((SECONDS + 20)) url n
  for url in "$@"; do
    while :; do
      n=$(curl -fsS --max-time 1 -H "Authorization: Bearer $TOKEN" "$url/system/cluster" 2>/dev/null |
        grep -o '"state":"alive"' | wc -l) || n=0
      [ "$n" -ge "$want" ] && break
      [ $SECONDS -lt $deadline ] || die "$url sees $n alive members after 20 s, want $want"
      sleep 0.2
    done
  done
}

# port_free PORT: fails if something listens on PORT (TCP or UDP).
port_free() {
  ! ss -Hltun "( sport = :$1 )" 2>/dev/null | grep -q .
}

# ---------------------------------------------------------------- set-up

rm -rf "$RUN"
mkdir -p "$BIN" "$LOGS" "$RUN/results" "$RUN/keys"

command -v go >/dev/null || die "go is not on PATH"
command -v curl >/dev/null || die "curl is not on PATH"
if [ "$MODE" != profile ] && ! command -v redis-server >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing redis-server (apt-get)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  fi
  command -v redis-server >/dev/null || die "redis-server is not installed (Debian: apt-get install redis-server)"
fi

log "building into $BIN"
# The tools are the bench module's (bench/go.mod), built from inside it.
(cd bench && go build -trimpath -o "$BIN/" ./loadgen ./floor ./redisnode ./report)
if [ "$MODE" = profile ]; then
  # The node with net/http/pprof on BENCH_PPROF_ADDR, added through an
  # overlay so cmd/node itself stays untouched.
  printf '{"Replace":{"%s":"%s"}}\n' "$ROOT/cmd/node/zz_bench_pprof.go" "$ROOT/bench/pprof.go.in" >"$RUN/overlay.json"
  go build -trimpath -overlay "$RUN/overlay.json" -o "$BIN/node-pprof" ./cmd/node
  NODE=$BIN/node-pprof
else
  go build -trimpath -o "$BIN/node" ./cmd/node
  NODE=$BIN/node
fi

# Ports, all on loopback.
FLOOR_HTTP=$PORT
FLOOR3_HTTP=($((PORT + 1)) $((PORT + 2)) $((PORT + 3)))
REDIS_PORT=$((PORT + 10))
RN_HTTP=($((PORT + 11)) $((PORT + 12)) $((PORT + 13)))
SOLO_HTTP=$((PORT + 20)); SOLO_GRPC=$((PORT + 21)); SOLO_GOSSIP=$((PORT + 22))
# Two 3-node clusters: a (default flags) on +30.., b (ALT_FLAGS) on +33..
CL_HTTP=($((PORT + 30)) $((PORT + 31)) $((PORT + 32)) $((PORT + 33)) $((PORT + 34)) $((PORT + 35)))
CL_GRPC=($((PORT + 40)) $((PORT + 41)) $((PORT + 42)) $((PORT + 43)) $((PORT + 44)) $((PORT + 45)))
CL_GOSSIP=($((PORT + 50)) $((PORT + 51)) $((PORT + 52)) $((PORT + 53)) $((PORT + 54)) $((PORT + 55)))
PPROF_PORT=$((PORT + 60))
for p in $FLOOR_HTTP "${FLOOR3_HTTP[@]}" $REDIS_PORT "${RN_HTTP[@]}" $SOLO_HTTP $SOLO_GRPC $SOLO_GOSSIP \
  "${CL_HTTP[@]}" "${CL_GRPC[@]}" "${CL_GOSSIP[@]}" $PPROF_PORT; do
  port_free "$p" || die "port $p is in use: set BENCH_PORT to another base"
done

# Keys: one tiers file with enough fresh keys for every run; each run takes
# its own slice of them (report keys), so no run sees a key counted before.
# Per configuration and concurrency: a warm-up and up to TRIES tries.
TRIES=2
GEN_KEYS=$(( ${#CONCURRENCY[@]} * ${#CONFIGS[@]} * TRIES * (LOAD_KEYS + MIXED_KEYS) + ${#CONFIGS[@]} * ACC_KEYS ))
[ "$MODE" = profile ] && GEN_KEYS=$(( LOAD_KEYS + MIXED_KEYS ))
TIERS=$RUN/tiers.json
"$BIN/loadgen" -config config/tiers.json -gen-config "$TIERS" -gen-keys "$GEN_KEYS" >/dev/null
log "tiers file with $GEN_KEYS fresh keys per tier: $TIERS"

# keys NAME SPEC: writes $RUN/keys/NAME.json with the next fresh keys and
# sets KF to its path. (Not in a $(…): a failure must stop the script.)
keys() {
  KF=$RUN/keys/$1.json
  "$BIN/report" keys -config "$TIERS" -state "$RUN/keys/used.json" -take "$2" -out "$KF"
}

urls() { local p out=""; for p in "$@"; do out+="${out:+,}http://127.0.0.1:$p"; done; echo "$out"; }

# start_cluster NAME FIRST FLAGS...: a 3-node cluster on the ports
# CL_*[FIRST..FIRST+2], its nodes named NAME-n1..3 in the logs, each with
# TL_FLAGS and FLAGS; its first node gets the environment in N1_ENV
# (KEY=value words, possibly none).
N1_ENV=()
start_cluster() {
  local name=$1 f=$2 i j; shift 2
  for i in 0 1 2; do
    j=$((f + i))
    local join=()
    [ "$i" -gt 0 ] && join=(-join "127.0.0.1:${CL_GOSSIP[$f]}")
    local env=()
    [ "$i" -eq 0 ] && env=("${N1_ENV[@]}")
    start "$name-n$((i + 1))" env "${env[@]}" "$NODE" -config "$TIERS" -node-name "n$((i + 1))" "${TL_FLAGS[@]}" "$@" \
      -http-addr "127.0.0.1:${CL_HTTP[$j]}" -grpc-addr "127.0.0.1:${CL_GRPC[$j]}" -gossip-addr "127.0.0.1:${CL_GOSSIP[$j]}" \
      "${join[@]}"
    # The seed first, so the others find it.
    [ "$i" -eq 0 ] && wait_ready "$name-n1" "http://127.0.0.1:${CL_HTTP[$f]}/readyz"
  done
  for i in 1 2; do wait_ready "$name-n$((i + 1))" "http://127.0.0.1:${CL_HTTP[$((f + i))]}/readyz"; done
  wait_members 3 "http://127.0.0.1:${CL_HTTP[$f]}" "http://127.0.0.1:${CL_HTTP[$((f + 1))]}" "http://127.0.0.1:${CL_HTTP[$((f + 2))]}"
}

# loadspec LOAD: sets SPEC (the keys to take) and MIX (loadgen's -mix) for
# a load.
loadspec() {
  case $1 in
    enterprise) SPEC=enterprise=$LOAD_KEYS MIX=enterprise=100 ;;
    mixed) SPEC=free=$MIXED_KEYS,pro=$MIXED_KEYS,enterprise=$MIXED_KEYS MIX=$MIXED_MIX ;;
    *) die "unknown load $1" ;;
  esac
}

# ---------------------------------------------------------------- profile mode

if [ "$MODE" = profile ]; then
  pnodes=${PROFILE_NODES:-3} pc=${PROFILE_C:-64}
  log "starting a $pnodes-node cluster (node n1 serves pprof on 127.0.0.1:$PPROF_PORT); load at c=$pc"
  N1_ENV=("BENCH_PPROF_ADDR=127.0.0.1:$PPROF_PORT")
  if [ "$pnodes" = 1 ]; then
    start tl-n1 env "${N1_ENV[@]}" "$NODE" -config "$TIERS" -node-name n1 "${TL_FLAGS[@]}" \
      -http-addr "127.0.0.1:${CL_HTTP[0]}" -grpc-addr "127.0.0.1:${CL_GRPC[0]}" -gossip-addr "127.0.0.1:${CL_GOSSIP[0]}"
    wait_ready tl-n1 "http://127.0.0.1:${CL_HTTP[0]}/readyz"
    targets=$(urls "${CL_HTTP[0]}")
  else
    start_cluster tl 0
    targets=$(urls "${CL_HTTP[@]:0:3}")
  fi
  loadspec "${PROFILE_LOAD:-enterprise}"
  keys load "$SPEC"
  "$BIN/loadgen" -config "$TIERS" -keys-file "$KF" -mix "$MIX" \
    -targets "$targets" -c "$pc" -d "$WARM" -quiet -json >/dev/null 2>>"$LOGS/loadgen.log" || true
  "$BIN/loadgen" -config "$TIERS" -keys-file "$KF" -mix "$MIX" \
    -targets "$targets" -c "$pc" -d "$DUR" -quiet -json >"$RUN/load.json" 2>>"$LOGS/loadgen.log" &
  lg=$!
  sleep 2
  curl -fsS --max-time 20 -o "$RUN/n1.cpu.pb.gz" "http://127.0.0.1:$PPROF_PORT/debug/pprof/profile?seconds=8"
  wait $lg || true
  go tool pprof -top -nodecount=40 "$NODE" "$RUN/n1.cpu.pb.gz" >"$RUN/top.txt" 2>/dev/null
  go tool pprof -top -cum -nodecount=40 "$NODE" "$RUN/n1.cpu.pb.gz" >"$RUN/top-cum.txt" 2>/dev/null
  log "profile of n1 ($pnodes nodes, c=$pc): $(grep -o '"requests_per_second":[0-9]*' "$RUN/load.json" | cut -d: -f2) req/s; $RUN/n1.cpu.pb.gz, $RUN/top.txt, $RUN/top-cum.txt"
  head -n 30 "$RUN/top.txt"
  exit 0
fi

# ---------------------------------------------------------------- start everything

log "starting the floor, redis-server, 3 redisnodes, a standalone node and a 3-node cluster"
start floor "$BIN/floor" -http-addr "127.0.0.1:$FLOOR_HTTP" -config "$TIERS" -node-name n1
# Three floor processes: what three processes cost on these CPUs with no
# limiter at all, the floor of any 3-node configuration.
for i in 0 1 2; do
  start "floor3-n$((i + 1))" "$BIN/floor" -http-addr "127.0.0.1:${FLOOR3_HTTP[$i]}" -config "$TIERS" -node-name "n$((i + 1))"
done
start redis redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
  --daemonize no --protected-mode yes --loglevel warning
deadline=$((SECONDS + 20))
until [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; do
  alive redis || die "redis-server did not start"
  [ $SECONDS -lt $deadline ] || die "redis-server not answering PING after 20 s"
  sleep 0.1
done
for i in 0 1 2; do
  start "rn-n$((i + 1))" "$BIN/redisnode" -config "$TIERS" -node-name "n$((i + 1))" -admin-token "$TOKEN" \
    -http-addr "127.0.0.1:${RN_HTTP[$i]}" -redis-addr "127.0.0.1:$REDIS_PORT" -pool 64
done
start tl-solo "$NODE" -config "$TIERS" -node-name n1 "${TL_FLAGS[@]}" \
  -http-addr "127.0.0.1:$SOLO_HTTP" -grpc-addr "127.0.0.1:$SOLO_GRPC" -gossip-addr "127.0.0.1:$SOLO_GOSSIP"
start_cluster tl 0
# shellcheck disable=SC2086 # split on purpose: a list of flags
[ -n "$ALT_FLAGS" ] && start_cluster tlb 3 $ALT_FLAGS
wait_ready floor "http://127.0.0.1:$FLOOR_HTTP/readyz"
for i in 0 1 2; do wait_ready "floor3-n$((i + 1))" "http://127.0.0.1:${FLOOR3_HTTP[$i]}/readyz"; done
for i in 0 1 2; do wait_ready "rn-n$((i + 1))" "http://127.0.0.1:${RN_HTTP[$i]}/readyz"; done
wait_ready tl-solo "http://127.0.0.1:$SOLO_HTTP/readyz"
log "all ready"

# Configurations: name, design (with the variant after a colon), nodes,
# HTTP ports.
declare -A DESIGN=([floor]=floor [floor3]=floor [redis1]=redis [redis3]=redis [tl1]=tierlimit [tl3]=tierlimit
  [tl3b]="tierlimit:$ALT_FLAGS")
declare -A NODES=([floor]=1 [floor3]=3 [redis1]=1 [redis3]=3 [tl1]=1 [tl3]=3 [tl3b]=3)
declare -A PORTS=([floor]="$FLOOR_HTTP" [floor3]="${FLOOR3_HTTP[*]}" [redis1]="${RN_HTTP[0]}" [redis3]="${RN_HTTP[*]}"
  [tl1]="$SOLO_HTTP" [tl3]="${CL_HTTP[*]:0:3}" [tl3b]="${CL_HTTP[*]:3:3}")

# fallbacks CONFIG: checks decided without the shared count so far, summed
# over the configuration's nodes; "-" for the floor.
fallbacks() {
  [ "${DESIGN[$1]}" = floor ] && { echo -; return; }
  local p total=0 n
  for p in ${PORTS[$1]}; do
    n=$(curl -fsS --max-time 2 "http://127.0.0.1:$p/metrics" |
      awk '/^(tierlimit_local_fallbacks_total|bench_redis_fail_open_total)/ { s += $NF } END { printf "%d", s }')
    total=$((total + n))
  done
  echo "$total"
}

# CPU accounting, to tell how much of the machine other programs took
# during a run (this is a shared machine): busy seconds of the whole machine,
# minus those of our servers and of this shell's children (loadgen, curl).
cpu_busy() { awk '/^cpu / { printf "%.2f", ($2 + $3 + $4 + $7 + $8 + $9) / 100 }' /proc/stat; }
# cpu_ours sets OURS: CPU seconds used by our servers and by this shell's
# reaped children. (Not in a $(…) or a pipe: `times` must run in this shell.)
cpu_ours() {
  local pid servers
  servers=$(for pid in "${PIDS[@]}"; do cat "/proc/$pid/stat" 2>/dev/null; done |
    awk '{ s += $14 + $15 } END { printf "%.2f", s / 100 }')
  times >"$RUN/times"
  OURS=$(tail -n 1 "$RUN/times" | awk -v s="$servers" '{
    for (i = 1; i <= 2; i++) { split($i, a, "m"); sub("s", "", a[2]); s += a[1] * 60 + a[2] }
    printf "%.2f", s }')
}
NCPU=$(nproc)
# others_pct BUSY0 OURS0 T0: sets OTHERS to the percent of the machine's
# CPUs that other programs used since the three readings were taken.
others_pct() {
  local busy
  busy=$(cpu_busy); cpu_ours
  OTHERS=$(awk -v b0="$1" -v o0="$2" -v t0="$3" -v b1="$busy" -v o1="$OURS" -v t1="$EPOCHREALTIME" -v n="$NCPU" \
    'BEGIN { x = ((b1 - b0) - (o1 - o0)) / ((t1 - t0) * n) * 100; if (x < 0) x = 0; printf "%.0f", x }')
}

# wait_quiet SECONDS: waits, at most SECONDS, until other programs use less
# than 10% of the machine over 2 s.
wait_quiet() {
  [ "$1" -gt 0 ] || return 0
  local deadline=$((SECONDS + $1)) b o t said=
  while :; do
    b=$(cpu_busy); cpu_ours; o=$OURS; t=$EPOCHREALTIME
    sleep 2
    others_pct "$b" "$o" "$t"
    [ "$OTHERS" -lt 10 ] && { [ -n "$said" ] && log "machine quiet again"; return 0; }
    [ $SECONDS -lt "$deadline" ] || { log "machine still busy (others: $OTHERS%): measuring anyway"; return 0; }
    [ -n "$said" ] || log "other programs use $OTHERS% of the machine: waiting up to $1 s"
    said=1
  done
}

RUNS=$RUN/runs.tsv
: >"$RUNS"
MAX_OTHERS=${BENCH_MAX_OTHERS:-15}   # a run during which others took more than this % of the machine is redone

# measure OUT LOADGEN-ARGS...: runs loadgen with fresh keys taken by the
# caller into KF, writing its report to OUT; sets OTHERS to the share of the
# machine other programs took meanwhile.
measure() {
  local out=$1; shift
  local b o t
  b=$(cpu_busy); cpu_ours; o=$OURS; t=$EPOCHREALTIME
  "$BIN/loadgen" -config "$TIERS" -keys-file "$KF" -quiet -json "$@" >"$out" 2>>"$LOGS/loadgen.log" ||
    log "loadgen exited $? (report kept; see $LOGS/loadgen.log)"
  others_pct "$b" "$o" "$t"
  [ -s "$out" ] || die "no report from loadgen in $out"
}

# loadrun CONFIG C LOAD: the measured run, with fresh keys, after a warm-up
# with the same keys: the keys of a live API are hit again and again, and
# the run measures that steady state (a key's first check on a node that
# does not own it pays a round trip for its lease; the warm-up pays those).
# On a shared machine: each try first waits (a while) for other programs to
# leave the CPUs, a try during which they took more than MAX_OTHERS% of the
# machine is redone, up to TRIES times, and the cleanest try is kept.
loadrun() {
  local cfg=$1 c=$2 load=$3 targets before after out try fb rps best=
  # shellcheck disable=SC2086
  targets=$(urls ${PORTS[$cfg]})
  loadspec "$load"
  for try in $(seq "$TRIES"); do
    wait_quiet "$QUIET_WAIT"
    keys "$cfg-c$c-$load-try$try" "$SPEC"
    "$BIN/loadgen" -config "$TIERS" -keys-file "$KF" -mix "$MIX" \
      -targets "$targets" -c "$c" -d "$WARM" -quiet -json >/dev/null 2>>"$LOGS/loadgen.log" || true
    before=$(fallbacks "$cfg")
    out=$RUN/results/$cfg-c$c-$load-try$try.json
    measure "$out" -mix "$MIX" -targets "$targets" -c "$c" -d "$DUR"
    after=$(fallbacks "$cfg")
    fb=-
    [ "$before" != - ] && fb=$((after - before))
    rps=$(grep -o '"requests_per_second":[0-9]*' "$out" | head -n 1 | cut -d: -f2)
    log "$cfg c=$c $load: $rps req/s, fallbacks $fb, other programs $OTHERS% of the machine"
    if [ -z "$best" ] || [ "$OTHERS" -lt "${best%%$'\t'*}" ]; then
      best="$OTHERS"$'\t'"load:$load"$'\t'"${DESIGN[$cfg]}"$'\t'"${NODES[$cfg]}"$'\t'"$c"$'\t'"$out"$'\t'"$fb"$'\t'"$OTHERS"
    fi
    [ "$OTHERS" -le "$MAX_OTHERS" ] && break
    [ "$try" -lt "$TRIES" ] && log "$cfg c=$c $load: redoing (others above $MAX_OTHERS%)"
  done
  printf '%s\n' "${best#*$'\t'}" >>"$RUNS"
}

# accrun CONFIG: fresh keys of every tier, each sent well over its limit at c=64.
accrun() {
  local cfg=$1 targets out before after
  # shellcheck disable=SC2086
  targets=$(urls ${PORTS[$cfg]})
  out=$RUN/results/$cfg-accuracy.json
  wait_quiet "$QUIET_WAIT"
  before=$(fallbacks "$cfg")
  keys "acc-$cfg" free=$ACC_KEYS,pro=$ACC_KEYS,enterprise=$ACC_KEYS
  measure "$out" -accuracy-keys "$ACC_KEYS" -mix free=10,pro=30,enterprise=60 -n "$ACC_REQUESTS" -d 40s \
    -targets "$targets" -c 64
  after=$(fallbacks "$cfg")
  printf 'accuracy\t%s\t%s\t64\t%s\t%s\t%s\n' "${DESIGN[$cfg]}" "${NODES[$cfg]}" "$out" "$((after - before))" "$OTHERS" >>"$RUNS"
  log "$cfg accuracy: fallbacks $((after - before)), other programs $OTHERS% of the machine"
}

QUIET_WAIT=0
[ "$MODE" = full ] && QUIET_WAIT=${BENCH_QUIET_WAIT:-60}
LOAD_AVG_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for load in "${LOADS[@]}"; do
  for c in "${CONCURRENCY[@]}"; do
    for cfg in "${CONFIGS[@]}"; do
      loadrun "$cfg" "$c" "$load"
    done
  done
done
for cfg in "${CONFIGS[@]}"; do
  [ "${DESIGN[$cfg]}" = floor ] || accrun "$cfg"
done
LOAD_AVG_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- report

cpu=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2 | sed 's/^ *//' || true)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- . ':(exclude)*.md' 2>/dev/null || commit+=" + uncommitted changes"
{
  echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "machine=$(nproc) CPUs${cpu:+ ($cpu)}, $(uname -sr), loadgen on the same CPUs"
  echo "go=$(go env GOVERSION)"
  echo "redis=$(redis-server --version | grep -o 'v=[0-9.]*' | cut -d= -f2)"
  echo "code=$commit"
  echo "runs=$DUR each after a $WARM warm-up with the same keys, fresh for each run: enterprise load $LOAD_KEYS enterprise keys (L = 1500/min: the limit never binds); mixed load $MIXED_MIX over $MIXED_KEYS keys per tier"
  echo "load average (1/5/15 min)=$LOAD_AVG_BEFORE before, $LOAD_AVG_AFTER after"
  extra="${TL_FLAGS[*]:4}"
  echo "cmd/node flags=${extra:-defaults}"
  echo "mode=$MODE"
} >"$RUN/meta.txt"

if [ "$MODE" = full ]; then
  "$BIN/report" table -runs "$RUNS" -meta "$RUN/meta.txt" -out "$RUN/results.md" -readme docs/benchmark.md
  log "wrote the results section of docs/benchmark.md"
  cat "$RUN/results.md"
else
  "$BIN/report" table -runs "$RUNS" -meta "$RUN/meta.txt" -out "$RUN/results.md"
  log "quick mode: wrote $RUN/results.md only"
  cat "$RUN/results.md"
fi
