#!/usr/bin/env bash
# bench/delay.sh: the 3-node cluster with a real delay on the path between
# its nodes, as between availability zones, measured against three bare
# processes in the same run.
#
#   bench/delay.sh          writes docs/network.md (about 4 minutes per
#                           delay in DELAYS: 12 with the default three,
#                           more while other programs hold the CPUs)
#   bench/delay.sh --quick  shorter runs; results stay in bench/out/delay
#   bench/delay.sh --profile
#                           where a node's time goes at c = PROFILE_C
#                           (default 1), per design in VARIANTS at the first
#                           of DELAYS: see below; touches no results
#   bench/delay.sh -h       this text
#
# Our kernels have no netem, so each node's peer port sits behind
# bench/delayproxy, which holds every chunk of bytes for the delay in each
# direction; gossip and the clients reach the nodes directly. Node i
# gossips on 127.0.0.(11+i), advertises that address, and serves gRPC on
# 127.0.1.(11+i) behind a proxy listening on the advertised address (with
# no delay, it serves gRPC on the advertised address itself, no proxy).
#
# For each design (leases, the default; -lease-ttl -1s, every check at its
# owner, with the default adaptive deadline; and -lease-ttl 5s, for cold
# keys only) and each delay (DELAYS, one way), at c = 1 and c = 16 with the
# enterprise load (fresh keys warmed up first, 100 at c = 1 and 500 at
# c = 16; the limit never binds, and a run where it did is flagged): p50, p99 and p99.9, what p50 and p99 add
# to three bare processes', the share of requests that paid a round trip
# to an owner (forwarded checks), fallbacks; then the cold load: COLD_KEYS
# fresh enterprise keys at COLD_RATE requests a second, c = 16, so that
# each key comes to each node once every 3 × COLD_KEYS / COLD_RATE seconds
# (2.5 s by default: less than once per default lease), warmed up at the
# same rate for as long as it is measured; and one accuracy run at c = 64
# (5 keys per tier sent well over their limits).
#
# The machine may be shared: before each measured run the script waits (up
# to QUIET_WAIT seconds, default 120) until other programs use less than
# 10% of the CPUs, and it reports for each run the share of the CPUs other
# programs took during it (runs above 15% are marked disturbed).
#
# --profile builds cmd/node with bench/pprof.go.in overlaid (as bench/run.sh
# --profile does: each node serves net/http/pprof on a port of its own) and,
# for each design, starts the cluster, warms PROFILE_C's keys up, and under
# that load takes node n1's CPU profile (10 s), then an execution trace
# (4 s), and counts the CPU each node used per request and the background
# calls per second (lease grants and renewals, give-backs, forwards). It
# writes bench/out/delay/profile/DESIGN/: cpu.pb.gz, top.txt, top-cum.txt,
# groups.txt (the profile split by what runs: HTTP, leases, pings, gRPC
# serving, gossip, GC), trace.out, sched.txt and sync.txt (go tool trace's
# scheduler latency and blocking profiles), rates.txt; and a summary,
# bench/out/delay/profile/summary.txt.
#
# Environment: DELAYS (default "0 500us 2ms"), VARIANTS (default "leases
# no-leases ttl5s"), CONCURRENCY (default "1 16"), COLD (default 1; 0 skips
# the cold load), ACCURACY (default 1; 0 skips the accuracy runs),
# COLD_KEYS (default 1000), COLD_RATE (default 1200), DELAY_DUR (the
# measured run's length, default 8s, 3s with --quick), STEADY_TTL5S (1: the
# -lease-ttl 5s design runs the steady loads too), QUIET_WAIT,
# BENCH_PORT (default 25000; uses BENCH_PORT .. BENCH_PORT+30). Only a full
# run with every design, both concurrencies, the cold load and the accuracy
# runs writes docs/network.md. Every process it starts is stopped by PID on
# exit; it needs go, curl and jq.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)

COMMAND="DELAYS=\"${DELAYS:-0 500us 2ms}\"${VARIANTS:+ VARIANTS=\"$VARIANTS\"}${CONCURRENCY:+ CONCURRENCY=\"$CONCURRENCY\"}${COLD:+ COLD=$COLD}${ACCURACY:+ ACCURACY=$ACCURACY}${COLD_KEYS:+ COLD_KEYS=$COLD_KEYS}${COLD_RATE:+ COLD_RATE=$COLD_RATE}${DELAY_DUR:+ DELAY_DUR=$DELAY_DUR}${STEADY_TTL5S:+ STEADY_TTL5S=$STEADY_TTL5S} bench/delay.sh${*:+ $*}"
MODE=full
case "${1:-}" in
  "") ;;
  --quick) MODE=quick ;;
  --profile) MODE=profile ;;
  -h|--help) sed -n '2,/^set -euo/{/^set -euo/!p}' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "bench/delay.sh: unknown argument $1 (want --quick, --profile, -h or nothing)" >&2; exit 2 ;;
esac
DUR=8s WARM=2s COLD_S=20
[ "$MODE" = quick ] && DUR=3s WARM=1s COLD_S=8
DUR=${DELAY_DUR:-$DUR}
read -r -a DELAYS <<<"${DELAYS:-0 500us 2ms}"
read -r -a VARIANTS <<<"${VARIANTS:-leases no-leases ttl5s}"
read -r -a CONC <<<"${CONCURRENCY:-1 16}"
COLD=${COLD:-1}
ACCURACY=${ACCURACY:-1}
LOAD_KEYS=500
# At c = 1 a cluster on loopback answers up to about 7,000 requests a
# second: 100 keys (150,000 admissions) keep the limit from binding over a
# warm-up and a measured run (or --profile's 17 s), and each key still comes
# to each node about 20 times a second, hot enough for leases. (With 20
# keys, as before, a third of the requests at c = 1 were 429s, answered
# from the cache of refusals.)
C1_KEYS=100
COLD_KEYS=${COLD_KEYS:-1000}
COLD_RATE=${COLD_RATE:-1200}
ACC_KEYS=5
ACC_REQUESTS=20000
QUIET_WAIT=${QUIET_WAIT:-120}
MAX_OTHERS=15 # a run during which other programs took more of the CPUs is marked disturbed
PORT=${BENCH_PORT:-25000}
TOKEN=bench-admin-token
declare -A VARIANT_FLAGS=([leases]="" [no-leases]="-lease-ttl -1s" [ttl5s]="-lease-ttl 5s")
declare -A VARIANT_NAME=([leases]="leases (default)" [no-leases]="\`-lease-ttl -1s\`" [ttl5s]="\`-lease-ttl 5s\`")
# What each design runs: ttl5s is there for the cold load only.
declare -A VARIANT_RUNS=([leases]="load cold acc" [no-leases]="load cold acc" [ttl5s]="cold acc")
[ "${STEADY_TTL5S:-0}" = 1 ] && VARIANT_RUNS[ttl5s]="load cold acc"
for v in "${VARIANTS[@]}"; do
  [ -n "${VARIANT_RUNS[$v]+x}" ] || { echo "bench/delay.sh: unknown variant $v in VARIANTS (want leases, no-leases, ttl5s)" >&2; exit 2; }
done
COMPLETE=0
[ "${VARIANTS[*]}" = "leases no-leases ttl5s" ] && [ "${CONC[*]}" = "1 16" ] && [ "$COLD" = 1 ] && [ "$ACCURACY" = 1 ] && COMPLETE=1

OUT=$ROOT/bench/out/delay
[ "$MODE" = profile ] && OUT=$ROOT/bench/out/delay-profile
BIN=$ROOT/bench/out/bin/delay # binaries of its own: other scripts rebuild bench/out/bin
LOGS=$OUT/logs
rm -rf "$OUT"
mkdir -p "$BIN" "$LOGS" "$OUT/results" "$OUT/keys"

log() { printf '%s delay: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
for c in go curl jq; do command -v "$c" >/dev/null || die "needs $c on PATH"; done

PIDS=()
NODE_PIDS=() # the cluster's nodes, n1 first
start() {
  local name=$1; shift
  "$@" >"$LOGS/$name.log" 2>&1 &
  PIDS+=($!)
}
stop_all() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=() NODE_PIDS=()
}
trap 'stop_all' EXIT
trap 'exit 130' INT TERM



# The code measured: the commit, and whether the tree differs from it (the
# library and the tools; docs aside) when the binaries are built.
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
# Go files and modules only (scripts and docs are not the code measured);
# untracked Go files under bench/ count only in the tools built here.
DIRTY=$( {
  git diff --name-only HEAD -- . ':(exclude)*.md' ':(exclude)*.sh'
  git ls-files --others --exclude-standard -- '*.go' go.mod go.sum ':(exclude)bench'
  git ls-files --others --exclude-standard -- bench/loadgen bench/loadreport bench/report bench/floor bench/delayproxy bench/go.mod bench/go.sum
} 2>/dev/null | sort -u)
CODE=$COMMIT
[ -n "$DIRTY" ] && CODE+=" + uncommitted changes ($(echo "$DIRTY" | wc -l) files: $(echo "$DIRTY" | head -n 5 | paste -sd ' ' -)$([ "$(echo "$DIRTY" | wc -l)" -gt 5 ] && echo ' …' || true))"
git diff --quiet HEAD -- bench/delay.sh 2>/dev/null || CODE+="; bench/delay.sh with uncommitted changes"
log "code: $CODE"
log "building into $BIN"
NODE=$BIN/node
NODE_ENV=() # per node: more environment, with --profile its pprof address
if [ "$MODE" = profile ]; then
  # cmd/node with net/http/pprof on BENCH_PPROF_ADDR, added through an
  # overlay: cmd/node itself has no profiler.
  printf '{"Replace":{"%s":"%s"}}\n' "$ROOT/cmd/node/zz_bench_pprof.go" "$ROOT/bench/pprof.go.in" >"$OUT/overlay.json"
  go build -trimpath -overlay "$OUT/overlay.json" -o "$BIN/node-pprof" ./cmd/node
  NODE=$BIN/node-pprof
  NODE_ENV=("BENCH_PPROF_ADDR=127.0.0.1:$((PORT + 25))" "BENCH_PPROF_ADDR=127.0.0.1:$((PORT + 26))" "BENCH_PPROF_ADDR=127.0.0.1:$((PORT + 27))")
else
  go build -trimpath -o "$NODE" ./cmd/node
fi
# The tools are the bench module's (bench/go.mod), built from inside it.
(cd bench && go build -trimpath -o "$BIN/" ./loadgen ./report ./floor ./delayproxy)
TIERS=$OUT/tiers.json
"$BIN/loadgen" -config config/tiers.json -gen-config "$TIERS" -gen-keys 40000 >/dev/null
keys() {
  KF=$OUT/keys/$1.json
  "$BIN/report" keys -config "$TIERS" -state "$OUT/keys/used.json" -take "$2" -out "$KF"
}

HTTP=("$PORT" $((PORT + 1)) $((PORT + 2)))
TARGETS=$(printf 'http://127.0.0.1:%s,' "${HTTP[@]}")
TARGETS=${TARGETS%,}

# metric NAME: the sum of a metric's samples over the running nodes.
metric() {
  local p
  for p in "${HTTP[@]}"; do curl -fsS --max-time 2 "http://127.0.0.1:$p/metrics"; done |
    awk -v n="$1" '$1 == n || index($1, n "{") == 1 { s += $NF } END { printf "%d", s }'
}

# decided: the nodes' decision-time histogram (all paths, all nodes) as
# "le count" lines, cumulative.
decided() {
  local p
  for p in "${HTTP[@]}"; do curl -fsS --max-time 2 "http://127.0.0.1:$p/metrics"; done |
    awk -F'[{}]' '$1 == "tierlimit_decision_duration_seconds_bucket" {
      match($2, /le="[^"]*"/); le = substr($2, RSTART + 4, RLENGTH - 5); split($3, v, " "); n[le] += v[1]
    } END { for (le in n) print le, n[le] }'
}

# decided_within BEFORE AFTER Q: the smallest bucket bound, in µs, within
# which the nodes decided a fraction Q of the decisions between the two
# decided snapshots; "> 25 ms" if beyond the last bound.
decided_within() {
  join <(sort "$1") <(sort "$2") | awk -v q="$3" '{ d[$1] = $3 - $2 } END {
    total = d["+Inf"]; if (total == 0) { print "null"; exit }
    best = "\"> 25 ms\""; bound = 1e9
    for (le in d) if (le != "+Inf" && d[le] >= q * total && le + 0 < bound) { bound = le + 0; best = le * 1e6 }
    print best }'
}

# start_cluster NAME DELAY FLAGS...: three nodes (logs NAME-n1..3), their
# peer ports behind delaying proxies unless DELAY is 0.
start_cluster() {
  local name=$1 delay=$2 i ip grpc join; shift 2
  for i in 0 1 2; do
    ip=127.0.0.$((11 + i)) grpc=$ip
    if [ "$delay" != 0 ]; then
      grpc=127.0.1.$((11 + i))
      start "$name-proxy$((i + 1))" "$BIN/delayproxy" -listen "$ip:$((PORT + 20))" -target "$grpc:$((PORT + 20))" -delay "$delay"
    fi
    join=()
    [ "$i" -gt 0 ] && join=(-join "127.0.0.11:$((PORT + 10))")
    # shellcheck disable=SC2068 # FLAGS split on purpose
    start "$name-n$((i + 1))" env ${NODE_ENV[$i]+"${NODE_ENV[$i]}"} "$NODE" -config "$TIERS" -node-name "n$((i + 1))" -admin-token "$TOKEN" -log-format json \
      -http-addr "127.0.0.1:${HTTP[$i]}" -gossip-addr "$ip:$((PORT + 10))" -advertise-addr "$ip" \
      -grpc-addr "$grpc:$((PORT + 20))" "${join[@]}" $@
    NODE_PIDS+=("${PIDS[-1]}")
    [ "$i" -eq 0 ] && wait_ready "http://127.0.0.1:${HTTP[0]}"
  done
  for i in 1 2; do wait_ready "http://127.0.0.1:${HTTP[$i]}"; done
  wait_members "http://127.0.0.1:${HTTP[0]}" "http://127.0.0.1:${HTTP[1]}" "http://127.0.0.1:${HTTP[2]}"
}

# nkeys C: how many keys a run at C takes: at c = 1 fewer, so that the
# warm-up reaches every key on every node even when each first check on a
# node costs a round trip of twice the delay.
nkeys() { if [ "$1" = 1 ]; then echo "$C1_KEYS"; else echo "$LOAD_KEYS"; fi; }

# warm C: sets WARM_ARGS, the warm-up's length for a run at C: at c = 1,
# enough requests to touch each key on each node about 10 times.
warm() {
  if [ "$1" = 1 ]; then WARM_ARGS=(-n $((C1_KEYS * 30)) -d 30s); else WARM_ARGS=(-d "$WARM"); fi
}

# warm_cold: sets WARM_ARGS for the cold load: as long as its measured run.
warm_cold() { WARM_ARGS=(-rate "$COLD_RATE" -d "${COLD_S}s"); }

# loadrun NAME C [cold] [floor]: warm-up, then a measured run with the same
# fresh keys (the cold load with "cold"); writes $OUT/results/NAME.json with
# the loadgen report, the share of the CPUs other programs took, and (not
# for the floor) the cluster's counters over the measured run.
loadrun() {
  local name=$1 c=$2 cold=${3:-} floor=${4:-} f0=0 fb0=0 f1=0 fb1=0
  local -a run_args
  if [ "$cold" = cold ]; then
    keys "$name" "enterprise=$COLD_KEYS"
    warm_cold
    run_args=(-rate "$COLD_RATE" -d "${COLD_S}s")
  else
    keys "$name" "enterprise=$(nkeys "$c")"
    warm "$c"
    run_args=(-d "$DUR")
  fi
  wait_quiet
  "$BIN/loadgen" -config "$TIERS" -keys-file "$KF" -mix enterprise=100 -targets "$TARGETS" -c "$c" "${WARM_ARGS[@]}" \
    -quiet -json >/dev/null 2>>"$LOGS/loadgen.log" || true
  [ -n "$floor" ] || { f0=$(metric tierlimit_forward_duration_seconds_count) fb0=$(metric tierlimit_local_fallbacks_total); decided >"$OUT/results/$name.dec0"; }
  others_begin
  "$BIN/loadgen" -config "$TIERS" -keys-file "$KF" -mix enterprise=100 -targets "$TARGETS" -c "$c" "${run_args[@]}" \
    -quiet -json >"$OUT/results/$name.load.json" 2>>"$LOGS/loadgen.log" || true
  others_end
  local d99=null d999=null
  if [ -z "$floor" ]; then
    f1=$(metric tierlimit_forward_duration_seconds_count) fb1=$(metric tierlimit_local_fallbacks_total)
    decided >"$OUT/results/$name.dec1"
    d99=$(decided_within "$OUT/results/$name.dec0" "$OUT/results/$name.dec1" 0.99)
    d999=$(decided_within "$OUT/results/$name.dec0" "$OUT/results/$name.dec1" 0.999)
  fi
  jq -c --argjson fw $((f1 - f0)) --argjson fb $((fb1 - fb0)) --argjson o "$OTHERS" --argjson d99 "$d99" --argjson d999 "$d999" \
    '. + {forwarded: $fw, fallbacks: $fb, others_pct: $o, decided_p99_within_us: $d99, decided_p99_9_within_us: $d999}' \
    "$OUT/results/$name.load.json" >"$OUT/results/$name.json"
  log "$name: $(jq -r '"\(.requests_per_second | floor) req/s, p50 \(.latency.p50_us | floor) us, p99 \(.latency.p99_us | floor) us, p99.9 \(.latency.p99_9_us | floor) us, max \(.latency.max_us | floor) us, forwarded \(.forwarded), fallbacks \(.fallbacks), 429s \(.status["429"]), others \(.others_pct)%, the nodes decided 99% within \(.decided_p99_within_us) us, 99.9% within \(.decided_p99_9_within_us) us"' "$OUT/results/$name.json")"
}

accrun() {
  local name=$1 fb0 fb1
  keys "$name-acc" free=$ACC_KEYS,pro=$ACC_KEYS,enterprise=$ACC_KEYS
  wait_quiet
  fb0=$(metric tierlimit_local_fallbacks_total)
  "$BIN/loadgen" -config "$TIERS" -keys-file "$KF" -accuracy-keys "$ACC_KEYS" -mix free=10,pro=30,enterprise=60 \
    -n "$ACC_REQUESTS" -d 40s -targets "$TARGETS" -c 64 -quiet -json >"$OUT/results/$name-acc.load.json" 2>>"$LOGS/loadgen.log" || true
  fb1=$(metric tierlimit_local_fallbacks_total)
  jq -c --argjson fb $((fb1 - fb0)) '. + {fallbacks: $fb}' "$OUT/results/$name-acc.load.json" >"$OUT/results/$name-acc.json"
  log "$name accuracy: $(jq -r '[.accuracy.tiers[] | "\(.tier) \(.admitted_min)-\(.admitted_max)/\(.limits[-1])"] | join(", ")' "$OUT/results/$name-acc.json")"
}

# ---------------------------------------------------------------- profile

# cpu_of PIDS...: CPU seconds the processes used so far.
cpu_of() {
  local pid
  for pid in "$@"; do cat "/proc/$pid/stat" 2>/dev/null; done | awk '{ s += $14 + $15 } END { printf "%.2f", s / 100 }'
}
# counter NAME [LABEL-MATCH]: a counter summed over the nodes, as metric does,
# with only the samples whose line contains LABEL-MATCH.
counter() {
  local p
  for p in "${HTTP[@]}"; do curl -fsS --max-time 2 "http://127.0.0.1:$p/metrics"; done |
    awk -v n="$1" -v m="${2:-}" '($1 == n || index($1, n "{") == 1) && index($0, m) { s += $NF } END { printf "%d", s }'
}
RATES=(tierlimit_forward_duration_seconds_count "tierlimit_lease_grants_total kind=\"new\"" "tierlimit_lease_grants_total kind=\"renewal\""
  tierlimit_leases_ended_total tierlimit_lease_decisions_total tierlimit_local_fallbacks_total)
snap_rates() {
  local r
  for r in "${RATES[@]}"; do
    # shellcheck disable=SC2086 # a name and a label match
    counter $r
    echo
  done
}

if [ "$MODE" = profile ]; then
  pc=${PROFILE_C:-1} d=${DELAYS[0]} PROF=$OUT/profile
  : >"$PROF.summary"
  mkdir -p "$PROF"
  for v in "${VARIANTS[@]}"; do
    P=$PROF/$v
    mkdir -p "$P"
    log "profile: cluster $v, delay $d, c = $pc"
    # shellcheck disable=SC2086 # flags split on purpose
    start_cluster "$v-$d" "$d" ${VARIANT_FLAGS[$v]}
    keys "prof-$v" "enterprise=$(nkeys "$pc")"
    warm "$pc"
    wait_quiet
    "$BIN/loadgen" -config "$TIERS" -keys-file "$KF" -mix enterprise=100 -targets "$TARGETS" -c "$pc" "${WARM_ARGS[@]}" \
      -quiet -json >/dev/null 2>>"$LOGS/loadgen.log" || true
    nodes=("${NODE_PIDS[@]}")
    snap_rates >"$P/counters0.txt"
    mapfile -t r0 <"$P/counters0.txt"
    c0=$(cpu_of "${nodes[@]}") n10=$(cpu_of "${nodes[0]}")
    others_begin
    "$BIN/loadgen" -config "$TIERS" -keys-file "$KF" -mix enterprise=100 -targets "$TARGETS" -c "$pc" -d 17s \
      -quiet -json >"$P/load.json" 2>>"$LOGS/loadgen.log" &
    lg=$!
    sleep 1
    curl -fsS --max-time 20 -o "$P/cpu.pb.gz" "http://127.0.0.1:$((PORT + 25))/debug/pprof/profile?seconds=10"
    curl -fsS --max-time 10 -o "$P/trace.out" "http://127.0.0.1:$((PORT + 25))/debug/pprof/trace?seconds=4"
    wait "$lg" || true
    others_end
    c1=$(cpu_of "${nodes[@]}") n11=$(cpu_of "${nodes[0]}")
    snap_rates >"$P/counters1.txt"
    mapfile -t r1 <"$P/counters1.txt"
    stop_all
    go tool pprof -top -nodecount=40 "$NODE" "$P/cpu.pb.gz" >"$P/top.txt" 2>/dev/null
    go tool pprof -top -cum -nodecount=60 "$NODE" "$P/cpu.pb.gz" >"$P/top-cum.txt" 2>/dev/null
    go tool trace -pprof=sched "$P/trace.out" >"$P/sched.pb" 2>/dev/null && go tool pprof -top -cum -nodecount=40 "$P/sched.pb" >"$P/sched.txt" 2>/dev/null
    go tool trace -pprof=sync "$P/trace.out" >"$P/sync.pb" 2>/dev/null && go tool pprof -top -cum -nodecount=30 "$P/sync.pb" >"$P/sync.txt" 2>/dev/null
    # The profile split by what each sample runs, by its outermost frames
    # of interest (a sample counts once, in the first group it matches).
    total=$(sed -n 's/.* of \(.*\) total.*/\1/p' "$P/top.txt" | head -n 1)
    {
      echo "n1's CPU profile over 10 s: $total of samples; share of them under each of:"
      for g in 'lease renewals=Router\)\.(renew|renewLoop|granted)$' \
        'lease sweeps and give-backs=Router\)\.(sweepLeases|give|queueGive)$' \
        'pings=Router\)\.ping$|Client\)\.Ping$' \
        'forwards on the request path=Batcher|Router\)\.CheckPath$' \
        'peer server (owner side)=peer\.\(\*Server\)' \
        'gRPC, all=google\.golang\.org/grpc' \
        'HTTP serving=net/http\.\(\*conn\)\.serve$' \
        'gossip=memberlist' \
        'GC=runtime\.(gcBgMarkWorker|gcAssistAlloc)$' \
        'scheduler, idle=runtime\.findRunnable$'; do
        name=${g%%=*} re=${g#*=}
        n=$(go tool pprof -top -focus="$re" "$NODE" "$P/cpu.pb.gz" 2>/dev/null | awk '/^Showing nodes accounting for/ { for (i = 1; i <= NF; i++) if ($i ~ /%$/ && $(i+1) == "of") { print $i; exit } }')
        echo "$name: ${n:-0%}"
      done
    } >"$P/groups.txt"
    {
      echo "== $v, delay $d, c = $pc: $(jq -r '"\(.requests) requests, \(.requests_per_second | round) req/s, p50 \(.latency.p50_us | round) us, p99 \(.latency.p99_us | round) us, p99.9 \(.latency.p99_9_us | round) us, max \(.latency.max_us | round) us"' "$P/load.json"); others ${OTHERS}%"
      reqs=$(jq -r .requests "$P/load.json")
      awk -v c0="$c0" -v c1="$c1" -v a="$n10" -v b="$n11" -v n="$reqs" -v s=17 'BEGIN {
        printf "CPU: the 3 nodes %.1f%% of one CPU, %.1f us per request (n1 alone %.1f us)\n", (c1 - c0) / s * 100, (c1 - c0) / n * 1e6, (b - a) / n * 1e6 }'
      for i in "${!RATES[@]}"; do
        awk -v name="${RATES[$i]}" -v a="${r0[$i]}" -v b="${r1[$i]}" 'BEGIN { printf "%s: %.1f/s over the 3 nodes\n", name, (b - a) / 17 }'
      done
      cat "$P/groups.txt"
    } | tee "$P/rates.txt" >>"$PROF.summary"
  done
  mv "$PROF.summary" "$PROF/summary.txt"
  cat "$PROF/summary.txt"
  exit 0
fi

log "three bare processes (the floor)"
for i in 0 1 2; do
  start "floor$i" "$BIN/floor" -http-addr "127.0.0.1:${HTTP[$i]}" -config "$TIERS" -node-name "n$((i + 1))"
done
for i in 0 1 2; do wait_ready "http://127.0.0.1:${HTTP[$i]}"; done
for c in "${CONC[@]}"; do loadrun "floor-c$c" "$c" "" floor; done
[ "$COLD" = 1 ] && loadrun floor-cold 16 cold floor
stop_all

# has V RUN: whether design V does RUN (load, cold, acc) in this run.
has() {
  case " ${VARIANT_RUNS[$1]} " in *" $2 "*) ;; *) return 1 ;; esac
  case $2 in cold) [ "$COLD" = 1 ] ;; acc) [ "$ACCURACY" = 1 ] ;; esac
}
for v in "${VARIANTS[@]}"; do
  for d in "${DELAYS[@]}"; do
    log "cluster $v, delay $d each way"
    # shellcheck disable=SC2086 # flags split on purpose
    start_cluster "$v-$d" "$d" ${VARIANT_FLAGS[$v]}
    if has "$v" load; then
      for c in "${CONC[@]}"; do loadrun "$v-$d-c$c" "$c"; done
    fi
    if has "$v" cold; then loadrun "$v-$d-cold" 16 cold; fi
    if has "$v" acc; then accrun "$v-$d"; fi
    stop_all
  done
done

# ---------------------------------------------------------------- report

md=$OUT/network.md
# row V D C NAME LABEL: one table row for the run NAME against the floor's
# run of the same load.
row() {
  local v=$1 d=$2 c=$3 name=$4 floor=$5 acc=null
  # The accuracy run goes with the design's first row at each delay.
  if [ -f "$OUT/results/$v-$d-acc.json" ]; then
    if { has "$v" load && [ "$name" = "c${CONC[0]}" ]; } || { ! has "$v" load && [ "$name" = cold ]; }; then
      acc=$(jq -c . "$OUT/results/$v-$d-acc.json")
    fi
  fi
  jq -r --arg design "${VARIANT_NAME[$v]}" --arg d "$d" --arg c "$c" --argjson max "$MAX_OTHERS" --argjson a "$acc" \
    --slurpfile f "$OUT/results/$floor.json" '
    def us: if . < 1000 then "\(. | round) µs" else "\(. / 10 | round / 100) ms" end;
    def signed: if . < 0 then "−\(-. | us)" else "+\(. | us)" end;
    def within: if . == null then "-" elif type == "string" then . else "≤ \(. | us)" end;
    ($f[0].latency) as $fl
    | "| \($design) | \($d) | \($c) | \(.requests_per_second | round) | \(.latency.p50_us | us) | \(.latency.p99_us | us) | \(.latency.p99_9_us | us) | \(.latency.p50_us - $fl.p50_us | signed) | \(.latency.p99_us - $fl.p99_us | signed) | \(100 * .forwarded / .requests * 10 | round / 10)% | \(.fallbacks) | \(.decided_p99_within_us | within) / \(.decided_p99_9_within_us | within) | \(.others_pct)%\(if .others_pct > $max then " (disturbed)" else "" end) | \(if $a == null then "" else ([$a.accuracy.tiers[] | "\(.tier) \(if .admitted_min == .admitted_max then "\(.admitted_min)" else "\(.admitted_min)–\(.admitted_max)" end) / \(.limits[-1])"] | join(", ")) + " (\($a.fallbacks) fallbacks)" end) |"' \
    "$OUT/results/$v-$d-$name.json"
}
floor_note() {
  jq -r '"p50 \(.latency.p50_us | round) µs, p99 \(.latency.p99_us | round) µs, p99.9 \(.latency.p99_9_us | round) µs (\(.requests_per_second | round) req/s; others \(.others_pct)%)"' "$OUT/results/$1.json"
}
HEADER="| design | delay | c | req/s | p50 | p99 | p99.9 | p50 added | p99 added | paid a round trip | fallbacks | node decided 99% / 99.9% | others | accuracy (admitted / L per key, c = 64) |"
RULE="|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|"
{
  echo "# The cluster across a network delay"
  echo
  echo "Written by \`bench/delay.sh\`: 3 \`cmd/node\` on one host, each peer port behind \`bench/delayproxy\` (the delay is one way: a round trip between nodes costs twice it); gossip and clients direct; default flags but the design's."
  echo "_date: $(date -u '+%Y-%m-%d %H:%M UTC'); machine: $NCPU CPUs, $(uname -sr), loadgen on the same CPUs; go: $(go env GOVERSION); code: $CODE; command: \`$COMMAND\`; mode: $MODE._"
  echo
  echo "## Steady keys"
  echo
  echo "Runs of $DUR after a warm-up with the same fresh enterprise keys ($C1_KEYS at c = 1, warmed with $((C1_KEYS * 30)) requests; $LOAD_KEYS at c = 16, warmed for $WARM); L = 1500/min, never binding."
  echo
  echo "$HEADER"
  echo "$RULE"
  for v in "${VARIANTS[@]}"; do
    has "$v" load || continue
    for d in "${DELAYS[@]}"; do
      for c in "${CONC[@]}"; do row "$v" "$d" "$c" "c$c" "floor-c$c"; done
    done
  done
  echo
  echo "Added: against three bare processes measured in the same run (c = 1: $(floor_note floor-c1 2>/dev/null || echo -); c = 16: $(floor_note floor-c16 2>/dev/null || echo -))."
  if [ "$COLD" = 1 ]; then
    echo
    echo "## Cold keys"
    echo
    echo "$COLD_KEYS fresh enterprise keys at $COLD_RATE requests a second over the three nodes, c = 16, round-robin, so that each key comes to each node once every $(awk -v k="$COLD_KEYS" -v r="$COLD_RATE" 'BEGIN { printf "%.1f", 3 * k / r }') s: $COLD_S s measured after $COLD_S s of the same load (every key's first check on each node, one round trip per window, falls in the warm-up)."
    echo
    echo "$HEADER"
    echo "$RULE"
    for v in "${VARIANTS[@]}"; do
      has "$v" cold || continue
      for d in "${DELAYS[@]}"; do row "$v" "$d" 16 cold floor-cold; done
    done
    echo
    echo "Added: against three bare processes under the same load in the same run ($(floor_note floor-cold))."
  fi
  bound=$(for f in "$OUT"/results/*.json; do
    case $f in *.load.json | *-acc.json) continue ;; esac
    jq -r --arg f "$(basename "$f" .json)" 'select(.status["429"] > 0) | "\($f): \(.status["429"]) of \(.requests)"' "$f"
  done | paste -sd ';' -)
  if [ -n "$bound" ]; then
    echo
    echo "**The limit bound in some runs** (429s, answered without a full check, so these rows understate the cost of a check): ${bound//;/; }."
  fi
  echo
  echo "Paid a round trip: checks forwarded to their owner on the request path, out of all requests; lease renewals go out in the background and are not counted. Fallbacks: checks decided locally because the owner did not answer in time. Node decided: the bucket bound of \`tierlimit_decision_duration_seconds\` (all nodes, all paths, over the measured run) within which 99% and 99.9% of the decisions took, from reading the key to the decision: what of the request's time the limiter itself holds, the rest being HTTP and waiting for a CPU. Others: the share of the two CPUs other programs took during the measured run (above $MAX_OTHERS%: disturbed); the script waits for the machine to be quiet before each run."
} >"$md"
if [ "$MODE" = full ] && [ "$COMPLETE" = 1 ]; then
  cp "$md" docs/network.md
  log "wrote docs/network.md"
fi
cat "$md"
