#!/usr/bin/env bash
# bench/pause.sh: what the two other nodes' clients see while one node of
# three is paused (SIGSTOP), measured against the same load with no pause,
# with 3 real cmd/node processes on loopback and default flags.
#
#   bench/pause.sh          PAUSE_REPEATS (default 2) pairs of runs, no
#                           pause and pause, alternating (about 2 minutes):
#                           writes docs/pause.md
#   bench/pause.sh --quick  one pair, shorter phases (about 1 minute):
#                           results stay in bench/out/pause
#   bench/pause.sh -h       this text
#
# Node i (n1, n2, n3) listens on 127.0.0.(40+i): HTTP on PAUSE_PORT,
# gossip on PAUSE_PORT+1, gRPC on PAUSE_PORT+2, with default flags (leases,
# the adaptive forward deadline capped at 4 ms, the breaker) but an admin
# token and JSON logs. Each run takes 500 fresh enterprise keys (L =
# 1500/min: the limit never binds, every request is a full check; a third
# of them owned by n2) and sends them round-robin to n1 and n3 only, at
# c = 16, as fast as they answer, from one bench/loadgen per phase:
#   warm-up  3 s (1 s --quick), not measured
#   before   5 s (3 s)
#   during   PAUSE_S (default 4.5 s): n2 is stopped with SIGSTOP just
#            before this phase's loadgen starts, and continued with SIGCONT
#            as it ends
#   after    5 s (3 s), from the SIGCONT
# A run "no pause" does the same without the signals. For each phase: the
# latency at n1 and n3 (p50, p99, p99.9, max), and from their metrics the
# checks forwarded to an owner, those that waited longer than 4 ms, and the
# local decisions (fallbacks) by reason. Between runs the script waits
# until every node sees 3 alive members and leaves the cluster 5 s to
# settle (breakers closed, deadlines learnt again).
#
# The machine may be shared: before each run the script waits (up to
# QUIET_WAIT seconds, default 120) until other programs use less than 10%
# of the CPUs, and reports the share they took during each phase (above
# 15%: disturbed).
#
# Everything runs on loopback; every process the script starts is stopped
# by PID when it exits (a stopped node is sent SIGCONT first), and every
# wait is bounded, so a run ends within a few minutes whatever happens.
# Needs go, curl and jq.
#
# Environment: PAUSE_PORT (default 25500), PAUSE_S (default 4.5),
# PAUSE_REPEATS (default 2; 1 with --quick), QUIET_WAIT (default 120),
# PAUSE_NODE_FLAGS (more flags for every node, such as "-lease-ttl -1s";
# a full run with them does not write docs/pause.md).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
COMMAND="${PAUSE_S:+PAUSE_S=$PAUSE_S }${PAUSE_REPEATS:+PAUSE_REPEATS=$PAUSE_REPEATS }${PAUSE_NODE_FLAGS:+PAUSE_NODE_FLAGS=\"$PAUSE_NODE_FLAGS\" }bench/pause.sh${*:+ $*}"

MODE=full
case "${1:-}" in
  "") ;;
  --quick) MODE=quick ;;
  -h|--help) sed -n '2,/^set -euo/{/^set -euo/!p}' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "bench/pause.sh: unknown argument $1 (want --quick, -h or nothing)" >&2; exit 2 ;;
esac
[ $# -le 1 ] || { echo "bench/pause.sh: one argument at most" >&2; exit 2; }

WARM_S=3 BEFORE_S=5 AFTER_S=5 REPEATS=${PAUSE_REPEATS:-2}
[ "$MODE" = quick ] && WARM_S=1 BEFORE_S=3 AFTER_S=3 REPEATS=${PAUSE_REPEATS:-1}
PAUSE_S=${PAUSE_S:-4.5}
C=16
LOAD_KEYS=500
QUIET_WAIT=${QUIET_WAIT:-120}
MAX_OTHERS=15
PORT=${PAUSE_PORT:-25500}
TOKEN="pause-admin-$$-$RANDOM$RANDOM"
read -r -a EXTRA_FLAGS <<<"${PAUSE_NODE_FLAGS:-}"
case $REPEATS in '' | *[!0-9]* | 0) echo "bench/pause.sh: PAUSE_REPEATS=$REPEATS: want a whole number from 1" >&2; exit 2 ;; esac
awk -v p="$PAUSE_S" 'BEGIN { exit !(p > 0 && p <= 30) }' ||
  { echo "bench/pause.sh: PAUSE_S=$PAUSE_S: want seconds, more than 0 and at most 30" >&2; exit 2; }

OUT=$ROOT/bench/out/pause
BIN=$ROOT/bench/out/bin/pause # binaries of its own: other scripts rebuild bench/out/bin
LOGS=$OUT/logs
RES=$OUT/results
rm -rf "$OUT"
mkdir -p "$BIN" "$LOGS" "$RES" "$OUT/keys"

# The node reads these variables when a flag is not given; none must leak in.
unset CONFIG HTTP_ADDR GRPC_ADDR GOSSIP_ADDR JOIN ADVERTISE_ADDR NODE_NAME ADMIN_TOKEN \
  CLUSTER_KEY FORWARD_TIMEOUT LEASE_TTL MAX_KEYS LOG_LEVEL LOG_FORMAT STATE_FILE

log() { printf '%s pause: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
for c in go curl jq; do command -v "$c" >/dev/null || die "needs $c on PATH"; done

PIDS=()     # every node, by index 0..2
STOPPED=""  # the PID of the node stopped now, if any
cleanup() {
  local pid
  [ -n "$STOPPED" ] && kill -CONT "$STOPPED" 2>/dev/null
  for pid in "${PIDS[@]}"; do kill -CONT "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  local deadline=$((SECONDS + 10))
  for pid in "${PIDS[@]}"; do
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null || true
  done
  PIDS=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM



# The code measured: the commit, and whether its Go files differ from it.
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=$( {
  git diff --name-only HEAD -- . ':(exclude)*.md' ':(exclude)*.sh'
  git ls-files --others --exclude-standard -- '*.go' go.mod go.sum ':(exclude)bench'
  git ls-files --others --exclude-standard -- bench/loadgen bench/loadreport bench/report bench/go.mod bench/go.sum
} 2>/dev/null | sort -u)
CODE=$COMMIT
[ -n "$DIRTY" ] && CODE+=" + uncommitted changes ($(echo "$DIRTY" | wc -l) files: $(echo "$DIRTY" | head -n 5 | paste -sd ' ' -))"
git diff --quiet HEAD -- bench/pause.sh 2>/dev/null || CODE+="; bench/pause.sh with uncommitted changes"
log "code: $CODE"

log "building into $BIN"
go build -trimpath -o "$BIN/node" ./cmd/node
(cd bench && go build -trimpath -o "$BIN/" ./loadgen ./report) # the bench module's tools (bench/go.mod)
TIERS=$OUT/tiers.json
"$BIN/loadgen" -config config/tiers.json -gen-config "$TIERS" -gen-keys $((LOAD_KEYS * 2 * REPEATS + 10)) >/dev/null
keys() {
  KF=$OUT/keys/$1.json
  "$BIN/report" keys -config "$TIERS" -state "$OUT/keys/used.json" -take "$2" -out "$KF"
}

URLS=()
for i in 1 2 3; do
  ip=127.0.0.$((40 + i))
  URLS+=("http://$ip:$PORT")
  join=()
  [ "$i" -gt 1 ] && join=(-join "127.0.0.41:$((PORT + 1))")
  "$BIN/node" -config "$TIERS" -node-name "n$i" -admin-token "$TOKEN" -log-format json \
    -http-addr "$ip:$PORT" -gossip-addr "$ip:$((PORT + 1))" -advertise-addr "$ip" \
    -grpc-addr "$ip:$((PORT + 2))" "${join[@]}" ${EXTRA_FLAGS[@]+"${EXTRA_FLAGS[@]}"} >"$LOGS/n$i.log" 2>&1 &
  PIDS+=($!)
  [ "$i" -eq 1 ] && wait_ready "${URLS[0]}"
done
for url in "${URLS[@]}"; do wait_ready "$url"; done
wait_members "${URLS[@]}"
PAUSED_PID=${PIDS[1]} # n2
TARGETS="${URLS[0]},${URLS[2]}"
log "3 nodes up: ${URLS[*]} (pids ${PIDS[*]}); load to n1 and n3, n2 (pid $PAUSED_PID) is the one paused"

# counters FILE: the metrics of n1 and n3 that a phase is judged by, summed
# over both, as one JSON object.
counters() {
  local u
  for u in "${URLS[0]}" "${URLS[2]}"; do curl -fsS --max-time 2 "$u/metrics" || true; done |
    awk '
      /^tierlimit_local_fallbacks_total\{/ { match($0, /reason="[^"]*"/); r = substr($0, RSTART + 8, RLENGTH - 9); fb[r] += $NF }
      /^tierlimit_forward_duration_seconds_count/ { fw += $NF }
      /^tierlimit_forward_duration_seconds_bucket.*le="0.005"/ { fw5 += $NF }
      /^tierlimit_forward_duration_seconds_bucket.*le="0.01"/ { fw10 += $NF }
      /^tierlimit_forward_errors_total/ { fe += $NF }
      /^tierlimit_lease_decisions_total / { ld += $NF }
      END {
        printf "{\"forwarded\":%d,\"forwarded_le_5ms\":%d,\"forwarded_le_10ms\":%d,\"forward_errors\":%d,\"lease_decisions\":%d,\"fallbacks\":{", fw, fw5, fw10, fe, ld
        sep = ""; for (r in fb) { printf "%s\"%s\":%d", sep, r, fb[r]; sep = "," }
        printf "}}\n"
      }' >"$1"
}

# phase RUN NAME SECONDS: one measured phase of RUN with the keys in $KF;
# writes $RES/RUN-NAME.json: loadgen's report, the counters' change over
# the phase (delta), and the share of the CPUs other programs took.
phase() {
  local run=$1 name=$2 secs=$3
  counters "$RES/$run-$name.c0"
  others_begin
  "$BIN/loadgen" -config "$TIERS" -keys-file "$KF" -mix enterprise=100 -targets "$TARGETS" -c "$C" -d "${secs}s" \
    -quiet -json >"$RES/$run-$name.load.json" 2>>"$LOGS/loadgen.log" || log "loadgen exited $? in $run $name (report kept)"
  others_end
  counters "$RES/$run-$name.c1"
  jq -c --slurpfile a "$RES/$run-$name.c0" --slurpfile b "$RES/$run-$name.c1" --argjson o "$OTHERS" --arg run "$run" --arg phase "$name" '
    ($a[0]) as $a | ($b[0]) as $b
    | . + {run: $run, phase: $phase, others_pct: $o, delta: {
        forwarded: ($b.forwarded - $a.forwarded),
        forwarded_over_5ms: (($b.forwarded - $b.forwarded_le_5ms) - ($a.forwarded - $a.forwarded_le_5ms)),
        forwarded_over_10ms: (($b.forwarded - $b.forwarded_le_10ms) - ($a.forwarded - $a.forwarded_le_10ms)),
        forward_errors: ($b.forward_errors - $a.forward_errors),
        lease_decisions: ($b.lease_decisions - $a.lease_decisions),
        fallbacks: ([$b.fallbacks | to_entries[] | {key, value: (.value - ($a.fallbacks[.key] // 0))} | select(.value > 0)] | from_entries)}}' \
    "$RES/$run-$name.load.json" >"$RES/$run-$name.json"
  log "  $name: $(jq -r '"\(.requests) requests, \(.requests_per_second | floor) req/s, p50 \(.latency.p50_us | floor) us, p99 \(.latency.p99_us | floor) us, p99.9 \(.latency.p99_9_us | floor) us, max \(.latency.max_us | floor) us, 5xx \(.status["5xx"]), transport errors \(.status.transport_error), forwarded \(.delta.forwarded) (\(.delta.forwarded_over_5ms) over 5 ms, \(.delta.forwarded_over_10ms) over 10 ms), fallbacks \(.delta.fallbacks | tojson), others \(.others_pct)%"' "$RES/$run-$name.json")"
}

# onerun RUN PAUSE: warm-up, before, during, after, with fresh keys; PAUSE
# (pause or none) says whether n2 is stopped during "during".
onerun() {
  local run=$1 pause=$2
  keys "$run" "enterprise=$LOAD_KEYS"
  wait_members "${URLS[@]}"
  wait_quiet
  log "$run ($pause): warm-up ${WARM_S} s"
  "$BIN/loadgen" -config "$TIERS" -keys-file "$KF" -mix enterprise=100 -targets "$TARGETS" -c "$C" -d "${WARM_S}s" \
    -quiet -json >/dev/null 2>>"$LOGS/loadgen.log" || true
  phase "$run" before "$BEFORE_S"
  if [ "$pause" = pause ]; then
    kill -STOP "$PAUSED_PID"
    STOPPED=$PAUSED_PID
    log "  n2 stopped"
  fi
  phase "$run" during "$PAUSE_S"
  if [ "$pause" = pause ]; then
    kill -CONT "$PAUSED_PID"
    STOPPED=""
    log "  n2 continued"
  fi
  phase "$run" after "$AFTER_S"
  kill -0 "$PAUSED_PID" 2>/dev/null || die "n2 exited; see $LOGS/n2.log"
}

for r in $(seq 1 "$REPEATS"); do
  onerun "nopause-$r" none
  sleep 5
  onerun "pause-$r" pause
  sleep 5 # let the breakers close and the deadlines learn again
done
for i in 0 1 2; do kill -0 "${PIDS[$i]}" 2>/dev/null || die "n$((i + 1)) exited; see $LOGS/n$((i + 1)).log"; done
# memberlist logs its failed probes of the stopped node at ERROR: expected.
if grep -v '"component":"memberlist"' "$LOGS"/n*.log | grep -q '"level":"ERROR"\|panic'; then
  log "errors or panics in the node logs (memberlist's aside): $(grep -v '"component":"memberlist"' "$LOGS"/n*.log | grep -c '"level":"ERROR"\|panic') lines; see $LOGS"
fi

# ---------------------------------------------------------------- report

md=$OUT/pause.md
{
  echo "# One node of three paused"
  echo
  echo "Written by \`bench/pause.sh\`: 3 \`cmd/node\` on loopback with default flags (leases, the adaptive forward deadline capped at 4 ms, the breaker$([ ${#EXTRA_FLAGS[@]} -gt 0 ] && echo "; and \`${EXTRA_FLAGS[*]}\`")); $LOAD_KEYS fresh enterprise keys per run (L = 1500/min, never binding; a third owned by n2) sent round-robin to n1 and n3 at c = $C; n2 stopped with SIGSTOP for the \"during\" phase (${PAUSE_S} s) and continued with SIGCONT at the start of \"after\", or not at all in the runs \"no pause\". Phases: before ${BEFORE_S} s, during ${PAUSE_S} s, after ${AFTER_S} s, after a warm-up of ${WARM_S} s; one loadgen per phase, so the latencies are exactly the phase's."
  echo
  echo "_date: $(date -u '+%Y-%m-%d %H:%M UTC'); machine: $NCPU CPUs, $(uname -sr), loadgen on the same CPUs; go: $(go env GOVERSION); code: $CODE; command: \`$COMMAND\`; mode: $MODE._"
  echo
  echo "| run | phase | requests | req/s | p50 | p99 | p99.9 | max | 5xx + transport errors | forwarded | of which > 5 ms / > 10 ms | fallbacks by reason | others |"
  echo "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|"
  for r in $(seq 1 "$REPEATS"); do
    for run in "nopause-$r" "pause-$r"; do
      for p in before during after; do
        jq -r --argjson max "$MAX_OTHERS" '
          def us: if . < 1000 then "\(. | round) µs" else "\(. / 10 | round / 100) ms" end;
          "| \(.run | sub("nopause"; "no pause") | sub("-"; " ")) | \(.phase) | \(.requests) | \(.requests_per_second | round) | \(.latency.p50_us | us) | \(.latency.p99_us | us) | \(.latency.p99_9_us | us) | \(.latency.max_us | us) | \(.status["5xx"] + .status.transport_error) | \(.delta.forwarded) | \(.delta.forwarded_over_5ms) / \(.delta.forwarded_over_10ms) | \(if (.delta.fallbacks | length) == 0 then "0" else (.delta.fallbacks | to_entries | map("\(.key) \(.value)") | join(", ")) end) | \(.others_pct)%\(if .others_pct > $max then " (disturbed)" else "" end) |"' \
          "$RES/$run-$p.json"
      done
    done
  done
  echo
  echo "Latency: from loadgen, of every request to n1 and n3 in the phase, send to last byte. Forwarded: checks n1 and n3 sent to an owner on the request path (lease renewals aside); of which > 5 ms / > 10 ms: those that took longer, from \`tierlimit_forward_duration_seconds\` (its buckets nearest above the 4 ms cap are 5 and 10 ms). Fallbacks: checks decided locally (\`tierlimit_local_fallbacks_total\`): timeout (waited the forward deadline), breaker_open (decided at once). Others: the share of the CPUs other programs took during the phase (above ${MAX_OTHERS}%: disturbed)."
} >"$md"
if [ "$MODE" = full ] && [ ${#EXTRA_FLAGS[@]} -eq 0 ]; then
  cp "$md" docs/pause.md
  log "wrote docs/pause.md"
fi
cat "$md"
