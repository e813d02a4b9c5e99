#!/usr/bin/env bash
# bench/stall.sh: what a paying customer sees while the owner of its keys
# is paused, and whether every rate-limit header the cluster sends holds,
# measured with 3 real cmd/node processes on loopback.
#
#   bench/stall.sh          both variants, two windows (about 2.5 minutes):
#                           writes the results section of docs/stall.md
#   bench/stall.sh --quick  one variant (the two other nodes), one window
#                           (about 1.5 minutes): results stay in bench/out/stall
#   bench/stall.sh -h       this text
#
# Node i (n1, n2, n3) listens on 127.0.0.(20+i): HTTP on STALL_PORT, gossip
# on STALL_PORT+1, gRPC on STALL_PORT+2, with default flags, a cluster key
# and an admin token made up for the run, and the default tiers
# (config/tiers.json) plus fresh keys (bench/loadgen -gen-config).
# bench/stall then picks a pro and an enterprise key owned by n2 (the
# nodes' ring, checked against the owner's tierlimit_store_keys), sends
# each 13 requests a second, round-robin over n1 and n3 (variant
# "others") and, at the same time with other keys, over all three
# ("all"; a request to the stopped owner waits up to the client's 3 s
# timeout), stops n2 (SIGSTOP) 5 s into the keys' first window, lets it
# go on (SIGCONT) 4 s later, and goes on to the end of that window and one
# more. It records every response and judges the counts per window, the
# runs of 429s, each Retry-After and Remaining against what the client
# saw next, and the owner's count after the stall against the 200s
# received: bench/stall/main.go says how; docs/stall.md shows the results.
#
# Everything runs on loopback. Every process the script starts is stopped
# by PID when it exits (a stopped node is sent SIGCONT first), and bench/stall
# gives up by itself a little after its last window. Needs go and curl.
#
# Environment: STALL_PORT (default 25300). STALL_NODE_BIN, an experiment:
# run this cmd/node binary (named node) instead of building ./cmd/node, to
# measure another commit's nodes (built from `git archive REV`, say) with
# this tooling; results then stay in bench/out/stall, and docs/stall.md is
# left alone.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
COMMAND="bench/stall.sh${*:+ $*}"

MODE=full
case "${1:-}" in
  "") ;;
  --quick) MODE=quick ;;
  -h|--help) sed -n '2,/^set -euo/{/^set -euo/!p}' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "bench/stall.sh: unknown argument $1 (want --quick, -h or nothing)" >&2; exit 2 ;;
esac
[ $# -le 1 ] || { echo "bench/stall.sh: one argument at most" >&2; exit 2; }
VARIANTS=others,all WINDOWS=2
[ "$MODE" = quick ] && VARIANTS=others WINDOWS=1

PORT=${STALL_PORT:-25300}
TOKEN="stall-admin-$$-$RANDOM$RANDOM"
CLUSTER_SECRET="stall-cluster-$$-$RANDOM$RANDOM$RANDOM"
OUT=$ROOT/bench/out/stall
BIN=$ROOT/bench/out/bin
LOGS=$OUT/logs
rm -rf "$OUT"
mkdir -p "$BIN" "$LOGS"

# The node reads these variables when a flag is not given; none must leak in.
unset CONFIG HTTP_ADDR GRPC_ADDR GOSSIP_ADDR JOIN ADVERTISE_ADDR NODE_NAME ADMIN_TOKEN \
  CLUSTER_KEY FORWARD_TIMEOUT LEASE_TTL MAX_KEYS LOG_LEVEL LOG_FORMAT STATE_FILE

log() { printf '%s stall: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
for c in go curl; do command -v "$c" >/dev/null || die "needs $c on PATH"; done

PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -CONT "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM


log "building into $BIN"
NODE=$BIN/node
if [ -n "${STALL_NODE_BIN:-}" ]; then
  NODE=$STALL_NODE_BIN
  if [ ! -x "$NODE" ] || [ "$(basename "$NODE")" != node ]; then die "STALL_NODE_BIN=$NODE: want an executable named node"; fi
else
  go build -trimpath -o "$NODE" ./cmd/node
fi
(cd bench && go build -trimpath -o "$BIN/" ./loadgen ./stall) # the bench module's tools (bench/go.mod)
"$BIN/loadgen" -config config/tiers.json -gen-config "$OUT/tiers.json" -gen-keys 60 >/dev/null

URLS=()
for i in 1 2 3; do
  ip=127.0.0.$((20 + i))
  URLS+=("http://$ip:$PORT")
  join=()
  [ "$i" -gt 1 ] && join=(-join "127.0.0.21:$((PORT + 1))")
  "$NODE" -config "$OUT/tiers.json" -node-name "n$i" -admin-token "$TOKEN" -cluster-key "$CLUSTER_SECRET" \
    -log-format json -http-addr "$ip:$PORT" -gossip-addr "$ip:$((PORT + 1))" -advertise-addr "$ip" \
    -grpc-addr "$ip:$((PORT + 2))" "${join[@]}" >"$LOGS/n$i.log" 2>&1 &
  PIDS+=($!)
  [ "$i" -eq 1 ] && wait_ready "${URLS[0]}"
done
for url in "${URLS[@]}"; do wait_ready "$url"; done
wait_members "${URLS[@]}"
log "3 nodes up: ${URLS[*]} (pids ${PIDS[*]})"

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
changed=$(git --no-optional-locks status --porcelain 2>/dev/null | grep -cv '^?? bench/out/' || true)
[ "$changed" -gt 0 ] && commit+=" + uncommitted changes ($changed files)"
[ -n "${STALL_NODE_BIN:-}" ] && commit="nodes: $STALL_NODE_BIN; tooling: $commit"

DOC=()
[ "$MODE" = full ] && [ -z "${STALL_NODE_BIN:-}" ] && DOC=(-doc docs/stall.md)
nodes=$(IFS=,; echo "${URLS[*]}")
pids=$(IFS=,; echo "${PIDS[*]}")
"$BIN/stall" -nodes "$nodes" -pids "$pids" -owner n2 -tiers "$OUT/tiers.json" -admin-token "$TOKEN" \
  -variants "$VARIANTS" -windows "$WINDOWS" -out "$OUT" "${DOC[@]}" -commit "$commit" -command "$COMMAND" -mode "$MODE"

if [ ${#DOC[@]} -gt 0 ]; then log "wrote docs/stall.md"; fi
log "records in $OUT/run.json, tables in $OUT/results.md"
cat "$OUT/results.md"
