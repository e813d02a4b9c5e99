#!/usr/bin/env bash
# bench/delay.sh: the 3-node cluster with a real delay on the path between
# its nodes, as between availability zones, measured against three bare
# processes in the same run.
#
#   bench/delay.sh          writes docs/network.md (about 4 minutes)
#   bench/delay.sh --quick  shorter runs; results stay in bench/out/delay
#
# Our kernels have no netem, so each node's peer port sits behind
# bench/delayproxy, which holds every chunk of bytes for the delay in each
# direction; gossip and the clients reach the nodes directly. Node i
# gossips on 127.0.0.(11+i), advertises that address, and serves gRPC on
# 127.0.1.(11+i) behind a proxy listening on the advertised address (with
# no delay, it serves gRPC on the advertised address itself, no proxy).
#
# For each design (leases, the default; and -lease-ttl -1s -forward-timeout
# 5ms, every check at the owner with a fixed 5 ms deadline) and each delay
# (DELAYS, one way), at c = 1 and c = 16 with the enterprise load (fresh
# keys warmed up first, 20 at c = 1 and 500 at c = 16; the limit never
# binds): p50 and p99, what they
# add to three bare processes', the share of requests that paid a round
# trip to an owner (forwarded checks), fallbacks; then one accuracy run at
# c = 64 (5 keys per tier sent well over their limits).
#
# Environment: DELAYS (default "0 500us 2ms"), BENCH_PORT (default 25000;
# uses BENCH_PORT .. BENCH_PORT+30). Every process it starts is stopped on
# exit; it needs go, curl and jq.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)

MODE=full
case "${1:-}" in
  "") ;;
  --quick) MODE=quick ;;
  -h|--help) sed -n '2,/^set -euo/{/^set -euo/!p}' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "bench/delay.sh: unknown argument $1 (want --quick or nothing)" >&2; exit 2 ;;
esac
DUR=8s WARM=2s
[ "$MODE" = quick ] && DUR=3s WARM=1s
read -r -a DELAYS <<<"${DELAYS:-0 500us 2ms}"
LOAD_KEYS=500
C1_KEYS=20
ACC_KEYS=5
ACC_REQUESTS=20000
PORT=${BENCH_PORT:-25000}
TOKEN=bench-admin-token
declare -A VARIANT_FLAGS=([leases]="" [no-leases]="-lease-ttl -1s -forward-timeout 5ms")
VARIANTS=(leases no-leases)

OUT=$ROOT/bench/out/delay
BIN=$ROOT/bench/out/bin
LOGS=$OUT/logs
rm -rf "$OUT"
mkdir -p "$BIN" "$LOGS" "$OUT/results" "$OUT/keys"

log() { printf '%s delay: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }
for c in go curl jq; do command -v "$c" >/dev/null || die "needs $c on PATH"; done

PIDS=()
start() {
  local name=$1; shift
  "$@" >"$LOGS/$name.log" 2>&1 &
  PIDS+=($!)
}
stop_all() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
}
trap 'stop_all' EXIT
trap 'exit 130' INT TERM

wait_ready() {
  local url=$1 deadline=$((SECONDS + 20))
  until curl -fsS --max-time 1 "$url" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "not ready at $url after 20 s"
    sleep 0.1
  done
}
wait_members() {
  local url n deadline=$((SECONDS + 20))
  for url in "$@"; do
    while :; do
      n=$(curl -fsS --max-time 1 -H "Authorization: Bearer $TOKEN" "$url/system/cluster" 2>/dev/null |
        grep -o '"state":"alive"' | wc -l) || n=0
      [ "$n" -ge 3 ] && break
      [ $SECONDS -lt $deadline ] || die "$url sees $n alive members after 20 s"
      sleep 0.2
    done
  done
}

log "building into $BIN"
go build -trimpath -o "$BIN/node" ./cmd/node
# The tools are the bench module's (bench/go.mod), built from inside it.
(cd bench && go build -trimpath -o "$BIN/" ./loadgen ./report ./floor ./delayproxy)
TIERS=$OUT/tiers.json
"$BIN/loadgen" -config config/tiers.json -gen-config "$TIERS" -gen-keys 40000 >/dev/null
keys() {
  KF=$OUT/keys/$1.json
  "$BIN/report" keys -config "$TIERS" -state "$OUT/keys/used.json" -take "$2" -out "$KF"
}

HTTP=($PORT $((PORT + 1)) $((PORT + 2)))
TARGETS=$(printf 'http://127.0.0.1:%s,' "${HTTP[@]}")
TARGETS=${TARGETS%,}

# metric NAME: the sum of a metric's samples over the running nodes.
metric() {
  local p
  for p in "${HTTP[@]}"; do curl -fsS --max-time 2 "http://127.0.0.1:$p/metrics"; done |
    awk -v n="$1" '$1 == n || index($1, n "{") == 1 { s += $NF } END { printf "%d", s }'
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
    start "$name-n$((i + 1))" "$BIN/node" -config "$TIERS" -node-name "n$((i + 1))" -admin-token "$TOKEN" -log-format json \
      -http-addr "127.0.0.1:${HTTP[$i]}" -gossip-addr "$ip:$((PORT + 10))" -advertise-addr "$ip" \
      -grpc-addr "$grpc:$((PORT + 20))" "${join[@]}" $@
    [ "$i" -eq 0 ] && wait_ready "http://127.0.0.1:${HTTP[0]}/readyz"
  done
  for i in 1 2; do wait_ready "http://127.0.0.1:${HTTP[$i]}/readyz"; done
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

# loadrun NAME C: warm-up, then a measured run with the same fresh keys;
# writes $OUT/results/NAME.json with the loadgen report and the cluster's
# counters over the measured run.
loadrun() {
  local name=$1 c=$2 f0 fb0 f1 fb1
  keys "$name" "enterprise=$(nkeys "$c")"
  warm "$c"
  "$BIN/loadgen" -config "$TIERS" -keys-file "$KF" -mix enterprise=100 -targets "$TARGETS" -c "$c" "${WARM_ARGS[@]}" \
    -quiet -json >/dev/null 2>>"$LOGS/loadgen.log" || true
  f0=$(metric tierlimit_forward_duration_seconds_count) fb0=$(metric tierlimit_local_fallbacks_total)
  "$BIN/loadgen" -config "$TIERS" -keys-file "$KF" -mix enterprise=100 -targets "$TARGETS" -c "$c" -d "$DUR" \
    -quiet -json >"$OUT/results/$name.load.json" 2>>"$LOGS/loadgen.log" || true
  f1=$(metric tierlimit_forward_duration_seconds_count) fb1=$(metric tierlimit_local_fallbacks_total)
  jq -c --argjson fw $((f1 - f0)) --argjson fb $((fb1 - fb0)) '. + {forwarded: $fw, fallbacks: $fb}' \
    "$OUT/results/$name.load.json" >"$OUT/results/$name.json"
  log "$name: $(jq -r '"\(.requests_per_second | floor) req/s, p50 \(.latency.p50_us | floor) us, p99 \(.latency.p99_us | floor) us, forwarded \(.forwarded), fallbacks \(.fallbacks)"' "$OUT/results/$name.json")"
}

accrun() {
  local name=$1 fb0 fb1
  keys "$name-acc" free=$ACC_KEYS,pro=$ACC_KEYS,enterprise=$ACC_KEYS
  fb0=$(metric tierlimit_local_fallbacks_total)
  "$BIN/loadgen" -config "$TIERS" -keys-file "$KF" -accuracy-keys "$ACC_KEYS" -mix free=10,pro=30,enterprise=60 \
    -n "$ACC_REQUESTS" -d 40s -targets "$TARGETS" -c 64 -quiet -json >"$OUT/results/$name-acc.load.json" 2>>"$LOGS/loadgen.log" || true
  fb1=$(metric tierlimit_local_fallbacks_total)
  jq -c --argjson fb $((fb1 - fb0)) '. + {fallbacks: $fb}' "$OUT/results/$name-acc.load.json" >"$OUT/results/$name-acc.json"
  log "$name accuracy: $(jq -r '[.accuracy.tiers[] | "\(.tier) \(.admitted_min)-\(.admitted_max)/\(.limits[-1])"] | join(", ")' "$OUT/results/$name-acc.json")"
}

log "three bare processes (the floor)"
for i in 0 1 2; do
  start "floor$i" "$BIN/floor" -http-addr "127.0.0.1:${HTTP[$i]}" -config "$TIERS" -node-name "n$((i + 1))"
done
for i in 0 1 2; do wait_ready "http://127.0.0.1:${HTTP[$i]}/readyz"; done
for c in 1 16; do
  keys "floor-c$c" "enterprise=$(nkeys "$c")"
  warm "$c"
  "$BIN/loadgen" -config "$TIERS" -keys-file "$KF" -mix enterprise=100 -targets "$TARGETS" -c "$c" "${WARM_ARGS[@]}" -quiet -json >/dev/null 2>&1 || true
  "$BIN/loadgen" -config "$TIERS" -keys-file "$KF" -mix enterprise=100 -targets "$TARGETS" -c "$c" -d "$DUR" \
    -quiet -json >"$OUT/results/floor-c$c.json" 2>>"$LOGS/loadgen.log" || true
  log "floor c=$c: $(jq -r '"p50 \(.latency.p50_us | floor) us, p99 \(.latency.p99_us | floor) us"' "$OUT/results/floor-c$c.json")"
done
stop_all

for v in "${VARIANTS[@]}"; do
  for d in "${DELAYS[@]}"; do
    log "cluster $v, delay $d each way"
    # shellcheck disable=SC2086 # flags split on purpose
    start_cluster "$v-$d" "$d" ${VARIANT_FLAGS[$v]}
    for c in 1 16; do loadrun "$v-$d-c$c" "$c"; done
    accrun "$v-$d"
    stop_all
  done
done

# ---------------------------------------------------------------- report

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- . ':(exclude)*.md' 2>/dev/null || commit+=" + uncommitted changes"
md=$OUT/network.md
{
  echo "# The cluster across a network delay"
  echo
  echo "Written by \`bench/delay.sh\`: 3 \`cmd/node\` on one host, each peer port behind \`bench/delayproxy\` (the delay is one way: a round trip between nodes costs twice it); gossip and clients direct."
  echo "_date: $(date -u '+%Y-%m-%d %H:%M UTC'); machine: $(nproc) CPUs, $(uname -sr), loadgen on the same CPUs; go: $(go env GOVERSION); code: $commit; runs: $DUR after a warm-up with the same fresh enterprise keys ($C1_KEYS at c = 1, warmed with $((C1_KEYS * 30)) requests; $LOAD_KEYS at c = 16, warmed for $WARM; L = 1500/min, never binding); mode: $MODE._"
  echo
  echo "| design | delay | c | req/s | p50 | p99 | p50 added | p99 added | paid a round trip | fallbacks | accuracy (admitted / L per key, c = 64) |"
  echo "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|"
  for v in "${VARIANTS[@]}"; do
    for d in "${DELAYS[@]}"; do
      for c in 1 16; do
        jq -r --arg v "$v" --arg d "$d" --argjson c "$c" --slurpfile f "$OUT/results/floor-c$c.json" --slurpfile a "$OUT/results/$v-$d-acc.json" '
          def us: if . < 1000 then "\(. | round) µs" else "\(. / 10 | round / 100) ms" end;
          def signed: if . < 0 then "−\(-. | us)" else "+\(. | us)" end;
          ($f[0].latency) as $fl
          | "| \(if $v == "leases" then "leases (default)" else "`-lease-ttl -1s -forward-timeout 5ms`" end) | \($d) | \($c) | \(.requests_per_second | round) | \(.latency.p50_us | us) | \(.latency.p99_us | us) | \(.latency.p50_us - $fl.p50_us | signed) | \(.latency.p99_us - $fl.p99_us | signed) | \(100 * .forwarded / .requests * 10 | round / 10)% | \(.fallbacks) | \(if $c == 1 then ([$a[0].accuracy.tiers[] | "\(.tier) \(if .admitted_min == .admitted_max then "\(.admitted_min)" else "\(.admitted_min)–\(.admitted_max)" end) / \(.limits[-1])"] | join(", ")) + " (\($a[0].fallbacks) fallbacks)" else "" end) |"' \
          "$OUT/results/$v-$d-c$c.json"
      done
    done
  done
  echo
  echo "Added: against three bare processes measured in the same run (c = 1: p50 $(jq -r '.latency.p50_us | round' "$OUT/results/floor-c1.json") µs, p99 $(jq -r '.latency.p99_us | round' "$OUT/results/floor-c1.json") µs; c = 16: p50 $(jq -r '.latency.p50_us | round' "$OUT/results/floor-c16.json") µs, p99 $(jq -r '.latency.p99_us | round' "$OUT/results/floor-c16.json") µs). Paid a round trip: checks forwarded to their owner on the request path, out of all requests; lease renewals go out in the background and are not counted. Fallbacks: checks decided locally because the owner did not answer in time."
} >"$md"
if [ "$MODE" = full ]; then
  cp "$md" docs/network.md
  log "wrote docs/network.md"
fi
cat "$md"
