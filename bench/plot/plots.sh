#!/usr/bin/env bash
# bench/plot/plots.sh: the pictures in docs/img, drawn from real runs.
#
#   bench/plot/plots.sh            all four steps below (about 5 minutes)
#   bench/plot/plots.sh timeline   run the timeline on a fresh 3-node cluster
#                                  of cmd/node processes on loopback:
#                                  docs/img/timeline.json
#   bench/plot/plots.sh auto       run the surge twice, each time on a fresh
#                                  3-node cluster of cmd/node -capacity
#                                  processes on loopback, once with NORMAL
#                                  pinned (manual) and once with the
#                                  automatic switch on: docs/img/auto.json
#                                  (about 3.5 minutes)
#   bench/plot/plots.sh latency    take the latency distributions of the
#                                  last bench/run.sh (its runs.tsv and
#                                  reports): docs/img/latency.json; skipped,
#                                  keeping the committed file, when there
#                                  is no run on disk
#   bench/plot/plots.sh draw       draw docs/img/timeline.svg, auto.svg and
#                                  latency.svg from the JSON files (no run:
#                                  redraws what is committed)
#
# Steps can be combined, in that order: `plots.sh auto draw`. The
# benchmark itself is bench/run.sh's (minutes): after a new one, full or
# --quick, `plots.sh latency draw` redraws its picture.
#
# The timeline: three nodes (the tiers of config/tiers-gpu.json, which limit
# requests, cost in audio-seconds and jobs at once, plus 30 fresh keys per
# tier), then cmd/timeline sends a steady load of each tier's keys,
# round-robin over the nodes, every request a 100 ms job with a cost
# estimate and an actual cost (its defaults: free jobs of 15 audio-seconds,
# pro 40, enterprise 60), POSTs DEGRADED to the first node after
# PLOTS_PHASE_S seconds and NORMAL to the second after as many more, and
# records per second the outcomes, the cost admitted and the limit that
# refused, and the moments every node reported the state.
#
# The surge (issue 21's measurement): three nodes with -capacity 4 (each
# runs GET /test's jobs on 4 slots, queueing beyond them), on the tiers of
# bench/plot/tiers-auto.json plus 120 fresh free keys, 10 pro and 5
# enterprise: limits on requests only, the paid tiers' (1000 and 2000 a
# minute per key, in both states) never reached, free's 150 a minute in
# NORMAL (the surge sends 90 per key) and 2 in DEGRADED. cmd/surge sends
# 100 ms jobs, round-robin over the nodes: pro 30 and enterprise 30 req/s
# throughout (half the cluster's 120 jobs/s), free 360 req/s for
# PLOTS_AUTO_SURGE_S after PLOTS_AUTO_BEFORE_S of calm, then
# PLOTS_AUTO_AFTER_S of calm; it records per second the outcomes and
# latencies per tier, the state every node reported and the cluster's
# saturation and demand as every node saw them. A request waits at most
# 10 s (then it counts as failed, at 10 s in the latencies); the client
# keeps at most 6000 in flight. The first run, manual, POSTs NORMAL first,
# which pins it (the switch off); the second, auto, posts nothing; the
# third, queue, posts nothing either and starts the nodes with -queue-wait
# as well, so that each runs 4 jobs at once and holds the rest, the paid
# tiers first, refusing the free ones still waiting when the cluster goes
# DEGRADED.
#
# The nodes are stopped at the end of each run, also on an error or Ctrl-C.
#
# Environment (all optional):
#   PLOTS_PHASE_S         length of each of the timeline's three phases
#                         (default 20)
#   PLOTS_AUTO_BEFORE_S, PLOTS_AUTO_SURGE_S, PLOTS_AUTO_AFTER_S
#                         the surge's phases (defaults 15, 30, 30)
#   PLOTS_AUTO_HIGH, PLOTS_AUTO_LOW, PLOTS_AUTO_UP_HOLD, PLOTS_AUTO_DOWN_HOLD
#                         the nodes' -auto-high, -auto-low, -auto-up-hold
#                         and -auto-down-hold (default: the node's own,
#                         1, 0.75, 1s, 15s)
#   PLOTS_AUTO_CAPACITY   the nodes' -capacity (default 4)
#   PLOTS_AUTO_MODES      the surge runs to make (default "manual auto queue";
#                         fewer, to try settings, leave auto.json)
#   PLOTS_AUTO_QUEUE_WAIT the queue run's -queue-wait (default 10s)
#   PLOTS_AUTO_RETRY_AFTER 1: the client honours Retry-After (a key that got
#                         a 429 sends nothing until it has passed)
#   PLOTS_RUNS            runs.tsv of the bench run to plot (default
#                         bench/out/run/runs.tsv, where bench/run.sh leaves it)
#   PLOTS_OUT             work directory: binaries, node logs, the tiers
#                         files, each surge run's record (default: a new
#                         one in $TMPDIR, removed at the end unless the run
#                         failed)
#   PLOTS_PNG=1           also write PNG copies next to the SVGs, in PLOTS_OUT
#
# Needs go, curl and jq.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)

STEPS=("$@")
[ ${#STEPS[@]} -gt 0 ] || STEPS=(timeline auto latency draw)
for s in "${STEPS[@]}"; do
  case $s in
  timeline | auto | latency | draw) ;;
  -h | --help) sed -n '2,/^set -euo/{/^set -euo/!p}' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "plots.sh: unknown step $s (want timeline, auto, latency, draw)" >&2; exit 2 ;;
  esac
done
has_step() { local s; for s in "${STEPS[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }

PHASE_S=${PLOTS_PHASE_S:-20}
AUTO_BEFORE_S=${PLOTS_AUTO_BEFORE_S:-15}
AUTO_SURGE_S=${PLOTS_AUTO_SURGE_S:-30}
AUTO_AFTER_S=${PLOTS_AUTO_AFTER_S:-30}
AUTO_CAPACITY=${PLOTS_AUTO_CAPACITY:-4}
AUTO_QUEUE_WAIT=${PLOTS_AUTO_QUEUE_WAIT:-10s}
RUNS=${PLOTS_RUNS:-$ROOT/bench/out/run/runs.tsv}
IMG=$ROOT/docs/img
KEEP_OUT=${PLOTS_OUT:+1}
OUT=${PLOTS_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/tierlimit-plots.XXXXXX")}
mkdir -p "$OUT/bin" "$IMG"
OUT=$(cd "$OUT" && pwd)

# chaos/lib.sh has the cluster checks (wait_members, now_ms, need, die)
# and pick_ports; it wants OUT, TOKEN, NODES and a ctl_curl.
NODES=3
TOKEN="plots-$$-$RANDOM$RANDOM"
CLUSTER_SECRET="plots-key-$$-$RANDOM$RANDOM$RANDOM"
ctl_curl() { curl "$@"; }
# shellcheck source=chaos/lib.sh
. "$ROOT/chaos/lib.sh"
need go curl jq

log() { printf '%s plots: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# ---- cleanup: every node we start is stopped on exit ------------------------

PIDS=()
cleanup() {
  local rc=$? p
  trap - EXIT INT TERM
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    local alive=0
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.3
  done
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ $rc = 0 ] && [ -z "$KEEP_OUT" ]; then
    rm -rf "$OUT"
  elif [ $rc != 0 ]; then
    log "failed; node logs and files kept in $OUT"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "building into $OUT/bin"
(cd bench/plot && go build -trimpath -o "$OUT/bin/plot" ./cmd/plot)

# ---- a cluster of three nodes ------------------------------------------------

# start_cluster TIERS [NODE-FLAG...] starts three nodes on fresh loopback
# ports with the tiers file TIERS and the flags given, waits until every
# one is ready and sees the others, and sets URLS. Their logs go to
# $OUT/node-$CLUSTER-$i.log.
CLUSTER=0
start_cluster() {
  local tiers=$1 i start t
  shift
  CLUSTER=$((CLUSTER + 1))
  pick_ports
  URLS=()
  for i in 0 1 2; do URLS[i]="http://127.0.0.1:$((BASE + i))"; done
  local seed=127.0.0.1:$((BASE + 20))
  log "starting 3 nodes: ${URLS[*]}"
  for i in 0 1 2; do
    local args=(-config "$tiers" -node-name "n$((i + 1))" -admin-token "$TOKEN"
      -cluster-key "$CLUSTER_SECRET" -log-format json -shutdown-grace 2s
      -http-addr "127.0.0.1:$((BASE + i))" -grpc-addr "127.0.0.1:$((BASE + 10 + i))"
      -gossip-addr "127.0.0.1:$((BASE + 20 + i))" -advertise-addr 127.0.0.1 "$@")
    [ "$i" != 0 ] && args+=(-join "$seed")
    "$OUT/bin/node" "${args[@]}" >>"$OUT/node-$CLUSTER-$i.log" 2>&1 &
    PIDS+=($!)
  done
  for i in 0 1 2; do
    start=$(now_ms)
    until curl -fsS -m 1 "${URLS[$i]}/readyz" >/dev/null 2>&1; do
      kill -0 "${PIDS[$i]}" 2>/dev/null || die "node $i exited; see $OUT/node-$CLUSTER-$i.log"
      [ $(($(now_ms) - start)) -lt 30000 ] || die "node $i not ready after 30s; see $OUT/node-$CLUSTER-$i.log"
      sleep 0.1
    done
  done
  t=$(wait_members 30 3 "${URLS[@]}") || die "the cluster did not form within 30s"
  log "cluster formed (3 alive everywhere ${t}s after ready)"
}

# stop_cluster stops the nodes and fails if a log shows a panic or a race.
stop_cluster() {
  local p
  log "stopping the nodes"
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
  if grep -qE '^(panic:|fatal error:)|DATA RACE' "$OUT"/node-*.log; then
    die "a node log shows a panic or a race; see $OUT/node-*.log"
  fi
}

if has_step timeline || has_step auto; then
  go build -trimpath -o "$OUT/bin/node" ./cmd/node
fi

# ---- timeline ------------------------------------------------------------------

if has_step timeline; then
  (cd bench/plot && go build -trimpath -o "$OUT/bin/timeline" ./cmd/timeline)
  # 30 fresh keys per tier next to the demo ones: enough for the load's
  # 30 free, 10 pro and 5 enterprise keys. The nodes and cmd/timeline read
  # the file's cost and concurrency limits as they are.
  jq '.api_keys += ([.tiers | keys[] as $t | range(1; 31) | {key: "plot-\($t)-\(.)", value: $t}] | from_entries)' \
    config/tiers-gpu.json >"$OUT/tiers.json"

  start_cluster "$OUT/tiers.json"
  log "running the timeline: 3 x ${PHASE_S}s"
  targets=$(IFS=,; echo "${URLS[*]}")
  "$OUT/bin/timeline" -targets "$targets" -admin-token "$TOKEN" -config "$OUT/tiers.json" \
    -phases "NORMAL=${PHASE_S}s,DEGRADED=${PHASE_S}s,NORMAL=${PHASE_S}s" -out "$IMG/timeline.json"
  stop_cluster
fi

# ---- auto ------------------------------------------------------------------------

if has_step auto; then
  (cd bench/plot && go build -trimpath -o "$OUT/bin/surge" ./cmd/surge)
  # 120 fresh free keys (360 req/s: 3 a second each), 10 pro, 5 enterprise.
  jq '.api_keys += ([{t: "free", n: 120}, {t: "pro", n: 10}, {t: "enterprise", n: 5}] |
      map(.t as $t | range(1; .n + 1) | {key: "surge-\($t)-\(.)", value: $t}) | from_entries)' \
    bench/plot/tiers-auto.json >"$OUT/tiers-auto.json"
  node_flags=(-capacity "$AUTO_CAPACITY")
  [ -n "${PLOTS_AUTO_HIGH:-}" ] && node_flags+=(-auto-high "$PLOTS_AUTO_HIGH")
  [ -n "${PLOTS_AUTO_LOW:-}" ] && node_flags+=(-auto-low "$PLOTS_AUTO_LOW")
  [ -n "${PLOTS_AUTO_UP_HOLD:-}" ] && node_flags+=(-auto-up-hold "$PLOTS_AUTO_UP_HOLD")
  [ -n "${PLOTS_AUTO_DOWN_HOLD:-}" ] && node_flags+=(-auto-down-hold "$PLOTS_AUTO_DOWN_HOLD")
  commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
  if [ -n "$(git status --porcelain -- . ':!docs/img' 2>/dev/null)" ]; then commit+="-dirty"; fi

  read -ra modes <<< "${PLOTS_AUTO_MODES:-manual auto queue}"
  for run in "${modes[@]}"; do
    # queue: the automatic switch with the nodes' paid-first queue.
    mode=$run run_flags=()
    if [ "$run" = queue ]; then mode=auto run_flags=(-queue-wait "$AUTO_QUEUE_WAIT"); fi
    setup=${run_flags[*]} client_flags=()
    if [ "${PLOTS_AUTO_RETRY_AFTER:-}" = 1 ]; then
      client_flags=(-retry-after) setup="${setup:+$setup, }clients honour Retry-After"
    fi
    start_cluster "$OUT/tiers-auto.json" "${node_flags[@]}" "${run_flags[@]}"
    log "running the surge, $run: ${AUTO_BEFORE_S}s calm, ${AUTO_SURGE_S}s surge, ${AUTO_AFTER_S}s calm"
    targets=$(IFS=,; echo "${URLS[*]}")
    "$OUT/bin/surge" -mode "$mode" -name "$run" -setup "$setup" -targets "$targets" -admin-token "$TOKEN" -config "$OUT/tiers-auto.json" \
      -before "${AUTO_BEFORE_S}s" -surge-for "${AUTO_SURGE_S}s" -after "${AUTO_AFTER_S}s" \
      "${client_flags[@]}" -commit "$commit" -out "$OUT/surge-$run.json"
    stop_cluster
  done
  if [ "${modes[*]}" = "manual auto queue" ]; then
    "$OUT/bin/plot" auto-data -in "$OUT/surge-manual.json,$OUT/surge-auto.json,$OUT/surge-queue.json" -out "$IMG/auto.json"
  else
    log "runs ${modes[*]} only: docs/img/auto.json left as it is; the records are in $OUT"
  fi
fi

# ---- latency -------------------------------------------------------------------

if has_step latency; then
  if [ -s "$RUNS" ]; then
    log "latency distributions from $RUNS"
    "$OUT/bin/plot" latency-data -runs "$RUNS" -out "$IMG/latency.json"
  else
    log "no bench run at $RUNS (bench/run.sh --quick makes one): keeping docs/img/latency.json"
  fi
fi

# ---- draw ------------------------------------------------------------------------

if has_step draw; then
  drew=""
  for pic in timeline auto latency; do
    if [ ! -s "$IMG/$pic.json" ]; then
      log "no docs/img/$pic.json: not drawing $pic.svg"
      continue
    fi
    "$OUT/bin/plot" "$pic" -in "$IMG/$pic.json" -out "$IMG/$pic.svg" >/dev/null
    if [ "${PLOTS_PNG:-}" = 1 ]; then
      "$OUT/bin/plot" "$pic" -in "$IMG/$pic.json" -out "$OUT/$pic.png" >/dev/null
      KEEP_OUT=1
    fi
    drew+=" docs/img/$pic.svg"
  done
  log "drew${drew:- nothing}"
  if [ "${PLOTS_PNG:-}" = 1 ]; then log "PNG copies in $OUT"; fi
fi
