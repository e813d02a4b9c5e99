#!/usr/bin/env bash
# bench/cost.sh: what a tier's cost and concurrency limits add to a
# request, measured end to end: 3 real cmd/node processes on loopback, the
# same keys' load through two tiers that differ only in those limits.
#
#   bench/cost.sh        c=1 and c=64, each tier 3 times in turn, 8 s a run
#                        (about 2 minutes); prints the table, results in
#                        bench/out/cost
#   bench/cost.sh -h     this text
#
# The tiers: "plain" limits requests only; "gpu" the same requests, and a
# cost and a concurrency limit that never bind (1e8 audio-seconds a
# minute, 100,000 jobs at once), so that every request of it reserves its
# cost estimate (the tier's default_estimate, 10), takes a slot at the
# key's owner, and settles at the cost GET /test?cost=5 reports. Both get
# GET /test?cost=5 from the same loadgen, over COST_KEYS keys each (30:
# hot enough that every node holds leases on the keys it does not own, in
# both tiers; with hundreds of keys at c=1 the leases lapse between a
# key's requests and most checks are forwarded, in both tiers, three
# forwards a request for gpu) spread over the three nodes. Runs alternate plain, gpu, plain, ... so that the
# machine's drift falls on both; the table gives the median of each
# tier's runs and the ratio gpu / plain, which is what to compare: on 2
# shared CPUs, absolute numbers move between sittings.
#
# Node i listens on 127.0.0.(30+i): HTTP on COST_PORT, gossip on
# COST_PORT+1, gRPC on COST_PORT+2. Every process the script starts is
# stopped by PID when it exits. Needs go, curl and jq.
#
# Environment: COST_PORT (default 25400), COST_RUN_S (default 8),
# COST_ROUNDS (default 3), COST_KEYS (default 30).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
case "${1:-}" in
  "") ;;
  -h|--help) sed -n '2,/^set -euo/{/^set -euo/!p}' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "bench/cost.sh: unknown argument $1 (want -h or nothing)" >&2; exit 2 ;;
esac

PORT=${COST_PORT:-25400}
RUN_S=${COST_RUN_S:-8}
KEYS=${COST_KEYS:-30}
ROUNDS=${COST_ROUNDS:-3}
TOKEN="cost-admin-$$-$RANDOM$RANDOM"
CLUSTER_SECRET="cost-cluster-$$-$RANDOM$RANDOM$RANDOM"
OUT=$ROOT/bench/out/cost
BIN=$ROOT/bench/out/bin
LOGS=$OUT/logs
rm -rf "$OUT"
mkdir -p "$BIN" "$LOGS" "$OUT/results"

# The node reads these variables when a flag is not given; none must leak in.
unset CONFIG HTTP_ADDR GRPC_ADDR GOSSIP_ADDR JOIN ADVERTISE_ADDR NODE_NAME ADMIN_TOKEN \
  CLUSTER_KEY FORWARD_TIMEOUT LEASE_TTL MAX_KEYS LOG_LEVEL LOG_FORMAT STATE_FILE

log() { printf '%s cost: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
for c in go curl jq; do command -v "$c" >/dev/null || die "needs $c on PATH"; done

PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "building into $BIN"
go build -trimpath -o "$BIN/node" ./cmd/node
(cd bench && go build -trimpath -o "$BIN/" ./loadgen)

# Keys for both tiers from loadgen, which knows request limits only (it
# loads keys.json); the nodes' tiers.json adds the gpu tier's cost and
# concurrency and the file's cost unit.
big='{"limit": 100000000, "burst": 100000000, "degraded": 100000000}'
jq -n --argjson big "$big" '{window_seconds: 60, tiers: {plain: $big, gpu: $big}}' >"$OUT/base.json"
"$BIN/loadgen" -config "$OUT/base.json" -gen-config "$OUT/keys.json" -gen-keys 500 >/dev/null
jq '.cost_unit = "audio-seconds"
  | .tiers.gpu.cost = {limit: 100000000, default_estimate: 10}
  | .tiers.gpu.concurrency = {limit: 100000}' "$OUT/keys.json" >"$OUT/tiers.json"

URLS=()
for i in 1 2 3; do
  ip=127.0.0.$((30 + i))
  URLS+=("http://$ip:$PORT")
  join=()
  [ "$i" -gt 1 ] && join=(-join "127.0.0.31:$((PORT + 1))")
  "$BIN/node" -config "$OUT/tiers.json" -node-name "n$i" -admin-token "$TOKEN" -cluster-key "$CLUSTER_SECRET" \
    -log-format json -http-addr "$ip:$PORT" -gossip-addr "$ip:$((PORT + 1))" -advertise-addr "$ip" \
    -grpc-addr "$ip:$((PORT + 2))" "${join[@]}" >"$LOGS/n$i.log" 2>&1 &
  PIDS+=($!)
  [ "$i" -eq 1 ] && wait_ready "${URLS[0]}"
done
for url in "${URLS[@]}"; do wait_ready "$url"; done
wait_members "${URLS[@]}"
TARGETS=$(IFS=,; echo "${URLS[*]}")
log "3 nodes up: $TARGETS"

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
changed=$(git --no-optional-locks status --porcelain 2>/dev/null | grep -cv '^?? bench/out/' || true)
[ "$changed" -gt 0 ] && commit+=" + uncommitted changes ($changed files)"

# run TIER C ROUND: one loadgen run, its report in results/.
run() {
  local tier=$1 c=$2 round=$3
  "$BIN/loadgen" -config "$OUT/keys.json" -mix "$tier=100" -keys "$KEYS" -targets "$TARGETS" -path "/test?cost=5" -c "$c" \
    -d "${RUN_S}s" -quiet -json -fail-on-5xx >"$OUT/results/$tier-c$c-$round.json" 2>>"$LOGS/loadgen.log" ||
    die "loadgen $tier c=$c round $round failed (5xx or transport errors?): see $LOGS/loadgen.log"
  log "$tier c=$c round $round: $(jq -r '"\(.requests_per_second | floor) req/s, p50 \(.latency.p50_us | floor) us, p99 \(.latency.p99_us | floor) us"' \
    "$OUT/results/$tier-c$c-$round.json")"
}

for c in 1 64; do
  # Warm both tiers' keys (leases, connections) before measuring.
  "$BIN/loadgen" -config "$OUT/keys.json" -mix plain=50,gpu=50 -keys "$((2 * KEYS))" -targets "$TARGETS" -path "/test?cost=5" -c "$c" \
    -d 3s -quiet -json >/dev/null 2>>"$LOGS/loadgen.log" || true
  for round in $(seq 1 "$ROUNDS"); do
    run plain "$c" "$round"
    run gpu "$c" "$round"
  done
done

# median FIELD TIER C: the median of FIELD over TIER's runs at C.
median() {
  jq -s "[.[] | $1] | sort | .[(length / 2 | floor)]" "$OUT"/results/"$2"-c"$3"-*.json
}
{
  echo "| c | tier | req/s | p50 | p99 |"
  echo "|---|---|---|---|---|"
  for c in 1 64; do
    for tier in plain gpu; do
      printf '| %s | %s | %.0f | %.0f µs | %.0f µs |\n' "$c" "$tier" "$(median .requests_per_second "$tier" "$c")" \
        "$(median .latency.p50_us "$tier" "$c")" "$(median .latency.p99_us "$tier" "$c")"
    done
    printf '| %s | gpu / plain | ×%.2f | ×%.2f | ×%.2f |\n' "$c" \
      "$(jq -n "$(median .requests_per_second gpu "$c") / $(median .requests_per_second plain "$c")")" \
      "$(jq -n "$(median .latency.p50_us gpu "$c") / $(median .latency.p50_us plain "$c")")" \
      "$(jq -n "$(median .latency.p99_us gpu "$c") / $(median .latency.p99_us plain "$c")")"
  done
  echo
  echo "Medians of $ROUNDS runs of ${RUN_S} s per tier, alternating; 3 nodes on loopback, $KEYS keys per tier; at $commit; \`bench/cost.sh\`."
} | tee "$OUT/results.md"
