#!/usr/bin/env bash
# chaos/processes.sh: three chaos scenarios against a 3-node cluster of plain
# processes, with loadgen judging every request. CI runs it.
#
#   chaos/processes.sh            # about 4 minutes; exit 0 only if every check passed
#
# Each scenario runs two loadgen phases with fresh keys, against the nodes
# that stay up only, so a 5xx or a transport error is a real failure:
#   fault phase: load, then the fault; the survivors must drop the node
#   heal phase:  load, then the node comes back; all must agree on 3 members
# and a short load on all three nodes afterwards.
#   kill       kill -9 node 0 (the seed), restart it under the same name
#   pause      kill -STOP node 1 until the others have declared it dead, then -CONT
#   partition  cut node 2 off from its peers (iptables DROP in its network
#              namespace; clients still reach both sides), set DEGRADED on
#              the majority side during the cut, then heal
#   rolling    a rolling deploy: SIGTERM each node in turn under load, start
#              it again, wait until the cluster is whole, then the next
#   restart    load all nodes until every accuracy key is used up; kill -9
#              node 2 and start it again at once, as a supervisor does,
#              before its peers can notice; load all nodes again with the
#              same keys, judged over both loads
#
# Cost and concurrency. The nodes are reverse proxies (-upstream) in front
# of bench/jobupstream, a counting stand-in for a GPU service: every request
# the nodes admit goes to it (GET /test, the request load, is answered at
# once). Beside the request load, each phase of kill, pause, partition and
# restart runs a second loadgen, the job load (180 requests/s, 32 workers,
# 30 a second per key), with 3 fresh keys per phase in each of the two
# tiers of chaos/tiers-jobs.json; both limit requests (10000, never
# reached), cost and concurrency. The rolling deploy has no job load: its
# one key set spans more than a window.
#   gpu-cost  cost 600 a window (DEGRADED 300): 20 jobs, all admitted within
#             about a second, so the fault meets keys at their cost limit,
#             as the request accuracy keys are at theirs. Concurrency 10,
#             which its load never reaches, so that its bound is read in
#             the cost alone.
#   gpu-conc  concurrency 2 (DEGRADED 1), held at it throughout, faults too;
#             cost 90000, which no phase reaches, for the same reason.
# Every job is GET /job?work=300ms&cost=30: the upstream holds it 300 ms and
# reports its actual cost, 30, the tiers' default_estimate, so no job costs
# more than it reserved (the bounds' overspend term is 0). The upstream
# counts per key the jobs it got (every one was admitted), their cost, and
# the most that ran at once; a job ends there before its answer is
# written, so within the time the node holds its slot. After each phase
# the script reads the counts (GET /stats) and checks per key, with N = 3,
# L and C a tier's cost and concurrency limits in NORMAL (burst), Ld its
# cost limit in DEGRADED (docs/design.md, "Cost and concurrency"):
#   cost admitted (the sum of its jobs' costs) within the phase's bound:
#     kill, pause fault     L + 2 ceil(L/N): until the survivors declare the
#                           owner dead, it is cut off from k = 2 nodes
#     kill, pause heal      L + ceil(L/N): the node's return is a join, which
#                           holds the keys it takes over to ceil(L/N) until
#                           their hand-off lands (H in README's bound)
#     partition fault       L + ceil(L/3), the 2 + 1 split (loopback mode,
#                           where it is a SIGSTOP: as a pause)
#     partition heal        Ld + ceil(L/N) + ceil(L/N): the majority's full
#                           DEGRADED limit, the cut-off node's share of its
#                           NORMAL one, and the rejoin's hand-off
#     restart               L + ceil(L/N) over both loads: the restarted node
#                           rejoins (a hand-off); it crashed with no load on it
#   jobs of one key in flight at once at the upstream: at most
#     2C + (N-1) ceil(C/N) (6 for gpu-conc) in every phase: 2C when the
#     key's owner changes while jobs the old one admitted still run (the
#     survivors' declaration, a node's return, the cut, a restart: slots
#     are not handed off), plus ceil(C/N) at each other node that takes a
#     slot on its own because the owner cannot be reached in time, cut off
#     or, on a loaded machine, merely slower than the forward deadline
#     (1 to 4 ms): the two overlap for as long as a job runs. Before the
#     fault (or the return), where no owner changes, at most
#     C + (N-1) ceil(C/N) (4): printed as "healthy", and checked.
#   and no 5xx, no transport error, no 4xx but 429, the upstream saw every
#   job loadgen got a 200 for and no other, and none was cancelled.
#
# Two modes. netns (as root, where `ip netns add` works): every node in a
# network namespace of its own on a private bridge (10.77.0.0/24, which
# exists only inside the namespaces this script creates), so the partition
# is a real network cut. loopback (anywhere else): nodes on 127.0.0.1 with
# distinct ports; the partition is then approximated by SIGSTOP and only
# the majority side is loaded.
#
# Environment (all optional):
#   CHAOS_MODE        auto (default), netns or loopback
#   CHAOS_OUT         run directory, kept afterwards (default: a new dir in $TMPDIR)
#   CHAOS_RATE        loadgen requests per second (default 1000)
#   CHAOS_KEYS        accuracy keys per tier per phase (default 12)
#   CHAOS_SCENARIOS   which to run, in order (default "kill pause partition rolling restart")
#   CHAOS_JOB_RATE    job load requests per second (default 180)
#   CHAOS_NO_BUILD=1  use bin/node, bin/loadgen and bin/jobupstream as they are
#
# Needs go, curl, jq; netns mode also ip and iptables. Every process it
# starts is stopped on exit, every namespace deleted.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

NODES=3
TOKEN="chaos-$$-$RANDOM$RANDOM"
CLUSTER_SECRET="chaos-key-$$-$RANDOM$RANDOM$RANDOM"
RATE=${CHAOS_RATE:-1000}
KEYS=${CHAOS_KEYS:-12}
SCENARIOS=${CHAOS_SCENARIOS:-kill pause partition rolling restart}
MIX=free=30,pro=70
JOB_TIERS=chaos/tiers-jobs.json # the GPU-like tiers, added to the nodes' file
JOB_MIX=gpu-cost=50,gpu-conc=50
JOB_KEYS=3           # fresh keys per job tier per phase
JOB_RATE=${CHAOS_JOB_RATE:-180}
JOB_WORK=300ms       # how long the upstream holds a job
JOB_COST=30          # its actual cost: the tiers' default_estimate
JOB_BOUND_FORMULA="cost admitted <= L + 2 ceil(L/N) (kill, pause: the owner cut off from 2 nodes until declared dead); L + ceil(L/N) (their heals and restart: a hand-off); L + ceil(L/3) (partition, a 2 + 1 split; as a pause in loopback mode); Ld + 2 ceil(L/N) (its heal: the DEGRADED majority, the cut-off share, a hand-off); jobs in flight at once <= 2C + (N-1) ceil(C/N) (an owner change, and slots the other nodes take on their own while the owner cannot be reached in time), C + (N-1) ceil(C/N) before the fault; overspend 0 (actual = estimate)"
FAULT_S=20           # length of a fault phase
FAULT_AT=6           # fault this long into it, once every accuracy key is at its limit
HEAL_S=22            # length of a heal phase
HEAL_AT=5            # the node returns this long into it
DETECT_DEADLINE=30   # the survivors must drop the node within this
CONVERGE_DEADLINE=45 # and take it back within this
OUT=${CHAOS_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/tierlimit-chaos.XXXXXX")}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
: >"$OUT/phases.jsonl"
: >"$OUT/scenarios.jsonl"

# The node reads these variables when a flag is not given; none must leak in.
unset CONFIG HTTP_ADDR GRPC_ADDR GOSSIP_ADDR JOIN ADVERTISE_ADDR NODE_NAME ADMIN_TOKEN \
  CLUSTER_KEY FORWARD_TIMEOUT MAX_KEYS SHUTDOWN_GRACE LOG_LEVEL LOG_FORMAT

# shellcheck source=chaos/lib.sh
. "$ROOT/chaos/lib.sh"
need go curl jq

# ---- mode -------------------------------------------------------------------

NS="tlchaos-$$"
MODE=${CHAOS_MODE:-auto}
netns_works() {
  [ "$(id -u)" = 0 ] && command -v ip >/dev/null && command -v iptables >/dev/null || return 1
  ip netns add "$NS-probe" 2>/dev/null || return 1
  local ok=0
  ip netns exec "$NS-probe" iptables -S >/dev/null 2>&1 || ok=1
  ip netns del "$NS-probe"
  return $ok
}
if [ "$MODE" = auto ]; then
  if netns_works; then MODE=netns; else MODE=loopback; fi
fi
case $MODE in
netns) netns_works || die "CHAOS_MODE=netns: needs root, ip netns and iptables" ;;
loopback) ;;
*) die "CHAOS_MODE=$MODE: want auto, netns or loopback" ;;
esac
say "mode $MODE, run directory $OUT"

# ---- cleanup: every process we start, every namespace we create -----------

PIDS=("" "" "") # node PIDs by index; "" when not running
LG_PIDS="" # loadgen PIDs in flight
UP_PID=""  # the upstream's
NAMESPACES=""

cleanup() {
  local rc=$? p i
  trap - EXIT INT TERM
  for p in $LG_PIDS; do kill -KILL "$p" 2>/dev/null || true; done
  if [ -n "$UP_PID" ]; then kill -TERM "$UP_PID" 2>/dev/null || true; fi
  for i in "${!PIDS[@]}"; do
    p=${PIDS[$i]}
    [ -n "$p" ] || continue
    kill -CONT "$p" 2>/dev/null || true
    kill -TERM "$p" 2>/dev/null || true
  done
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    local alive=0
    for i in "${!PIDS[@]}"; do
      p=${PIDS[$i]}
      [ -n "$p" ] && kill -0 "$p" 2>/dev/null && alive=1
    done
    [ $alive = 0 ] && break
    sleep 0.3
  done
  for i in "${!PIDS[@]}"; do
    p=${PIDS[$i]}
    [ -n "$p" ] && kill -KILL "$p" 2>/dev/null || true
  done
  if [ -n "$UP_PID" ]; then kill -KILL "$UP_PID" 2>/dev/null || true; fi
  wait 2>/dev/null || true
  for n in $NAMESPACES; do ip netns del "$n" 2>/dev/null || true; done
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- build and keys -----------------------------------------------------------

if [ "${CHAOS_NO_BUILD:-}" != 1 ]; then
  say "building bin/node, bin/loadgen and bin/jobupstream"
  CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o bin/node ./cmd/node
  # in the bench module (bench/go.mod)
  (cd bench && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$ROOT/bin/loadgen" ./loadgen &&
    CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$ROOT/bin/jobupstream" ./jobupstream)
fi
NODE_BIN=$ROOT/bin/node
LOADGEN=$ROOT/bin/loadgen
UPSTREAM_BIN=$ROOT/bin/jobupstream

# One file of fresh keys per loadgen phase, so each phase's accuracy keys
# start at zero in every store; the nodes get all of them.
PHASES=""
for s in $SCENARIOS; do
  case $s in
  rolling) PHASES="$PHASES rolling" ;; # one key set for the whole deploy
  restart) PHASES="$PHASES restart" ;;
  *) PHASES="$PHASES $s-fault $s-heal" ;;
  esac
done
for p in $PHASES; do
  # Twice the accuracy keys: enough for the after-check's 24 even when a
  # single scenario runs.
  "$LOADGEN" -config config/tiers.json -gen-config "$OUT/keys-$p.json" -gen-keys $((2 * KEYS)) >/dev/null
done
# The job load's keys, one file per phase or key set, of the job tiers only
# (jobkeys-*, so that keys-* above stays the request load's).
JOB_SETS=""
for s in $SCENARIOS; do
  case $s in
  kill | pause | partition) JOB_SETS="$JOB_SETS $s-fault $s-heal" ;;
  restart) JOB_SETS="$JOB_SETS restart" ;;
  esac
done
JOB_FILES=()
for p in $JOB_SETS; do
  "$LOADGEN" -config "$JOB_TIERS" -gen-config "$OUT/jobkeys-$p.json" -gen-keys "$JOB_KEYS" >/dev/null
  JOB_FILES+=("$OUT/jobkeys-$p.json")
done
# The nodes' file: every phase's keys, and the job tiers.
jq -s --slurpfile j "$JOB_TIERS" 'reduce .[1:][] as $f (.[0]; .api_keys += $f.api_keys)
  | .cost_unit = $j[0].cost_unit | .tiers += $j[0].tiers' \
  "$OUT"/keys-*.json ${JOB_FILES[@]+"${JOB_FILES[@]}"} >"$OUT/tiers.json"

# ---- the nodes ------------------------------------------------------------------

URLS=()   # base URL of node i, as the loadgen and the checks reach it
if [ "$MODE" = netns ]; then
  HUB="$NS-hub"
  ip netns add "$HUB"
  NAMESPACES="$HUB"
  ip -n "$HUB" link set lo up
  ip -n "$HUB" link add br0 type bridge
  ip -n "$HUB" addr add 10.77.0.254/24 dev br0
  ip -n "$HUB" link set br0 up
  for i in 0 1 2; do
    ip netns add "$NS-n$i"
    NAMESPACES="$NAMESPACES $NS-n$i"
    ip -n "$HUB" link add "v$i" type veth peer name eth0 netns "$NS-n$i"
    ip -n "$HUB" link set "v$i" master br0 up
    ip -n "$NS-n$i" link set lo up
    ip -n "$NS-n$i" addr add "10.77.0.$((i + 1))/24" dev eth0
    ip -n "$NS-n$i" link set eth0 up
    URLS[i]="http://10.77.0.$((i + 1)):8080"
  done
  SEED=10.77.0.1:7946
  # Loadgen and the checks run on the hub: they reach every node, also one
  # cut off from its peers, as a load balancer in front of both sides would.
  # CTL is a command prefix, not a function, so that `CTL... loadgen &` is
  # one process whose PID $! is.
  CTL=(ip netns exec "$HUB")
else
  pick_ports
  for i in 0 1 2; do URLS[i]="http://127.0.0.1:$((BASE + i))"; done
  SEED=127.0.0.1:$((BASE + 20))
  CTL=()
fi
# ctl runs a command where the nodes are reached (bash 3 safe with CTL empty).
ctl() { ${CTL[@]+"${CTL[@]}"} "$@"; }
ctl_curl() { ctl curl "$@"; }

# The upstream runs where the clients do (the hub, on the bridge, which the
# partition does not cut), on a port it picks; UPSTREAM is its base URL.
if [ "$MODE" = netns ]; then up_host=10.77.0.254; else up_host=127.0.0.1; fi
${CTL[@]+"${CTL[@]}"} "$UPSTREAM_BIN" -addr "$up_host:0" -addr-file "$OUT/upstream.addr" >>"$OUT/upstream.log" 2>&1 &
UP_PID=$!
for _ in $(seq 100); do
  [ -s "$OUT/upstream.addr" ] && break
  kill -0 "$UP_PID" 2>/dev/null || die "the upstream exited; see $OUT/upstream.log"
  sleep 0.1
done
[ -s "$OUT/upstream.addr" ] || die "the upstream did not start within 10s; see $OUT/upstream.log"
UPSTREAM="http://$(cat "$OUT/upstream.addr")"
ctl_curl -fsS -m 2 "$UPSTREAM/stats" >/dev/null || die "the upstream does not answer at $UPSTREAM"
say "upstream (bench/jobupstream) at $UPSTREAM"

start_node() {
  local i=$1 args
  args=(-config "$OUT/tiers.json" -node-name "chaos-n$i" -admin-token "$TOKEN"
    -cluster-key "$CLUSTER_SECRET" -log-format json -shutdown-grace 2s -upstream "$UPSTREAM")
  [ "$i" != 0 ] && args+=(-join "$SEED")
  if [ "$MODE" = netns ]; then
    args+=(-http-addr :8080 -grpc-addr :9090 -gossip-addr :7946 -advertise-addr "10.77.0.$((i + 1))")
    # ip netns exec execs the command: $! is the node itself.
    ip netns exec "$NS-n$i" "$NODE_BIN" "${args[@]}" >>"$OUT/node-$i.log" 2>&1 &
  else
    args+=(-http-addr "127.0.0.1:$((BASE + i))" -grpc-addr "127.0.0.1:$((BASE + 10 + i))"
      -gossip-addr "127.0.0.1:$((BASE + 20 + i))" -advertise-addr 127.0.0.1)
    "$NODE_BIN" "${args[@]}" >>"$OUT/node-$i.log" 2>&1 &
  fi
  PIDS[i]=$!
}

wait_ready() {
  local i=$1 start
  start=$(now_ms)
  until ctl_curl -fsS -m 1 "${URLS[$i]}/readyz" >/dev/null 2>&1; do
    kill -0 "${PIDS[$i]}" 2>/dev/null || die "node $i exited; see $OUT/node-$i.log"
    [ $(($(now_ms) - start)) -lt 30000 ] || die "node $i not ready after 30s; see $OUT/node-$i.log"
    sleep 0.1
  done
}

say "starting $NODES nodes: ${URLS[*]}"
for i in 0 1 2; do start_node $i; done
for i in 0 1 2; do wait_ready $i; done
t=$(wait_members 30 3 "${URLS[@]}") || die "the cluster did not form within 30s"
say "cluster formed: 3 alive everywhere after ${t}s more"

# ---- loadgen ------------------------------------------------------------------------

# loadgen_start PHASE SECONDS URL... starts a judged run in the background
# and sets LG to its PID. It uses the phase's fresh keys, or those of
# KEYSET if set.
loadgen_start() {
  local phase=$1 secs=$2 targets set=${KEYSET:-$1}
  shift 2
  targets=$(IFS=,; echo "$*")
  ${CTL[@]+"${CTL[@]}"} "$LOADGEN" -config "$OUT/keys-$set.json" -targets "$targets" -mix "$MIX" \
    -accuracy-keys "$KEYS" -c 16 -rate "$RATE" -d "${secs}s" -json -quiet -fail-on-5xx \
    >"$OUT/$phase.json" 2>"$OUT/$phase.err" &
  LG=$!
  LG_PIDS="$LG_PIDS $LG"
  # The job load, on the same targets, when the phase has job keys.
  JLG=""
  if [ -f "$OUT/jobkeys-$set.json" ]; then
    ${CTL[@]+"${CTL[@]}"} "$LOADGEN" -config "$OUT/jobkeys-$set.json" -targets "$targets" -mix "$JOB_MIX" \
      -keys $((2 * JOB_KEYS)) -path "/job?work=$JOB_WORK&cost=$JOB_COST" -c 32 -rate "$JOB_RATE" \
      -timeout 10s -d "${secs}s" -json -quiet -fail-on-5xx >"$OUT/$phase-jobs.json" 2>"$OUT/$phase-jobs.err" &
    JLG=$!
    LG_PIDS="$LG_PIDS $JLG"
  fi
}

# loadgen_end PHASE waits for the runs started last and judges them; the
# job load's here too, unless its keys are a KEYSET's, judged over its
# phases by the scenario (JOB_RC keeps the worst exit code).
JOB_RC=0
loadgen_end() {
  local rc=0 jrc=0
  wait "$LG" || rc=$?
  LG_PIDS=${LG_PIDS/ $LG/}
  if [ -n "$JLG" ]; then
    wait "$JLG" || jrc=$?
    LG_PIDS=${LG_PIDS/ $JLG/}
    JOB_RC=$((JOB_RC > jrc ? JOB_RC : jrc))
  fi
  eval_phase "$1" "$rc" "$OUT/$1.json"
  if [ -n "$JLG" ] && [ -z "${KEYSET:-}" ]; then
    eval_jobs "$1" "$jrc" "$1" "$OUT/$1-jobs.json"
  fi
  JLG=""
}

# jobs_before SET records the upstream's counts of SET's job keys now,
# before the fault (or the return): their most in flight so far is
# printed as the healthy one.
jobs_before() {
  [ -f "$OUT/jobkeys-$1.json" ] || return 0
  ctl_curl -fsS -m 3 "$UPSTREAM/stats?prefix=lg-gpu-" >"$OUT/$1-jobs-before.json" 2>/dev/null ||
    rm -f "$OUT/$1-jobs-before.json"
}

# eval_jobs PHASE EXIT_CODE SET REPORT... judges the job load of a phase
# (REPORT..., loadgen's, with SET's keys) by the upstream's counts of
# SET's keys: per tier, the most cost admitted of a key and the most of a
# key's jobs in flight at once, each against the phase's bound (see the
# header), and no 5xx, transport error or 4xx but 429. It appends the
# phase's line to phases.jsonl (kind "jobs") and a failure to the
# scenario for each broken rule. The bounds are jq expressions of the
# tier's $L, $Ld, $C, $Cd and $n, hence single quotes.
# shellcheck disable=SC2016
eval_jobs() {
  local phase=$1 rc=$2 set=$3 line f r why missing=0 stats before=null
  local cost_l='$L' cost_bound conc_l='$C'
  local conc_bound='2 * $C + ($n - 1) * cdiv($C; $n)' healthy_bound='$C + ($n - 1) * cdiv($C; $n)'
  shift 3
  case $phase in
  kill-fault | pause-fault) cost_bound='$L + 2 * cdiv($L; $n)' ;;
  partition-fault)
    if [ "$MODE" = netns ]; then cost_bound='$L + cdiv($L; 3)'; else cost_bound='$L + 2 * cdiv($L; $n)'; fi ;;
  partition-heal) cost_l='$Ld' conc_l='$Cd' cost_bound='$Ld + 2 * cdiv($L; $n)' ;;
  *) cost_bound='$L + cdiv($L; $n)' ;; # kill-heal, pause-heal, restart
  esac
  for r in "$@"; do
    jq -e '.requests' "$r" >/dev/null 2>&1 || { missing=1; say "  $phase jobs: no report in $r: $(tail -3 "${r%.json}.err" 2>/dev/null)"; }
  done
  stats=$(ctl_curl -fsS -m 5 "$UPSTREAM/stats?prefix=lg-gpu-" 2>/dev/null) || stats=""
  [ -s "$OUT/$set-jobs-before.json" ] && before=$(cat "$OUT/$set-jobs-before.json")
  if [ $missing = 0 ] && [ -n "$stats" ] && line=$(jq -sce --arg s "$SCENARIO" --arg p "$phase" --argjson n "$NODES" \
    --argjson rc "$rc" --argjson st "$stats" --argjson before "$before" --slurpfile kf "$OUT/jobkeys-$set.json" '
      def cdiv($a; $b): (($a + $b - 1) / $b | floor);
      def sum(f): map(f) | add // 0;
      def lim($l): [$l.limit, ($l.burst // $l.limit), ($l.degraded // $l.limit)];
      . as $rs | $kf[0] as $k
      | [$k.api_keys | to_entries | group_by(.value)[] | .[0].value as $t | map(.key) as $keys
         | (lim($k.tiers[$t].cost) | .[1]) as $L | (lim($k.tiers[$t].cost) | .[2]) as $Ld
         | (lim($k.tiers[$t].concurrency) | .[1]) as $C | (lim($k.tiers[$t].concurrency) | .[2]) as $Cd
         | [$keys[] as $key | $st.keys[$key] // {jobs: 0, cost: 0, max_in_flight: 0, canceled: 0}] as $ks
         | {tier: $t, keys: ($keys | length),
            jobs: ($ks | sum(.jobs)), ok: ([$rs[].per_tier[] | select(.tier == $t) | .["200"]] | add // 0),
            canceled: ($ks | sum(.canceled)),
            cost_max: ($ks | map(.cost) | max), cost_limit: ('"$cost_l"'), cost_bound: ('"$cost_bound"'),
            conc_max: ($ks | map(.max_in_flight) | max), conc_limit: ('"$conc_l"'), conc_bound: ('"$conc_bound"'),
            healthy_max: (if $before == null then null else [$keys[] as $key | $before.keys[$key].max_in_flight // 0] | max end),
            healthy_bound: ('"$healthy_bound"')}
        ] as $jobs
      | {scenario: $s, phase: $p, kind: "jobs", loadgen_exit: $rc, targets: [$rs[0].targets[]],
         requests: ($rs | sum(.requests)), elapsed_s: ($rs | map(.elapsed_seconds) | max * 10 | round / 10),
         ok: ($rs | sum(.status["200"])), limited: ($rs | sum(.status["429"])),
         unauthorized: ($rs | sum(.status["401"])), other_4xx: ($rs | sum(.status.other_4xx)),
         server_errors: ($rs | sum(.status["5xx"])), transport_errors: ($rs | sum(.status.transport_error)),
         transport_error_kinds: [$rs[].transport_errors[]], jobs: $jobs}
      | .failures = ([
          (select(.server_errors > 0) | "\(.server_errors) 5xx responses"),
          (select(.transport_errors > 0) | "\(.transport_errors) transport errors: \([.transport_error_kinds[] | "\(.count)x \(.error)"] | join("; "))"),
          (select(.unauthorized > 0) | "\(.unauthorized) 401s (nodes and loadgen disagree on keys)"),
          (select(.other_4xx > 0) | "\(.other_4xx) 4xx responses other than 429"),
          (select(.requests == 0) | "no requests"),
          (.jobs[] | select(.jobs == 0) | "tier \(.tier): no job reached the upstream"),
          (.jobs[] | select(.jobs != .ok) | "tier \(.tier): the upstream got \(.jobs) jobs, loadgen \(.ok) 200s"),
          (.jobs[] | select(.canceled > 0) | "tier \(.tier): \(.canceled) jobs cancelled before their end"),
          (.jobs[] | select(.cost_max > .cost_bound) | "tier \(.tier): a key was admitted cost \(.cost_max), over the bound \(.cost_bound) (L=\(.cost_limit))"),
          (.jobs[] | select(.conc_max > .conc_bound) | "tier \(.tier): a key had \(.conc_max) jobs in flight at once, over the bound \(.conc_bound) (C=\(.conc_limit))"),
          (.jobs[] | select(.healthy_max != null and .healthy_max > .healthy_bound) | "tier \(.tier): before the fault (or the return) a key had \(.healthy_max) jobs in flight at once, over the bound \(.healthy_bound) (C=\(.conc_limit))")
        ])' "$@" 2>"$OUT/$phase-jobs-eval.err"); then
    :
  else
    if [ $missing = 1 ]; then
      why="loadgen wrote no report"
    elif [ -z "$stats" ]; then
      why="the upstream gave no counts ($UPSTREAM/stats)"
    else
      why="could not judge the job load; see $OUT/$phase-jobs-eval.err"
    fi
    line=$(jq -cn --arg s "$SCENARIO" --arg p "$phase" --argjson rc "$rc" --arg why "$why" \
      '{scenario: $s, phase: $p, kind: "jobs", loadgen_exit: $rc, requests: 0, failures: [$why]}')
  fi
  echo "$line" >>"$OUT/phases.jsonl"
  say "  $phase jobs: $(jq -r '"\(.requests) requests, \(.server_errors // "-") 5xx, \(.transport_errors // "-") transport errors" + ([.jobs[]? | "; \(.tier) \(.jobs) jobs, cost max \(.cost_max) (L \(.cost_limit), bound \(.cost_bound)), in flight max \(.conc_max) (C \(.conc_limit), bound \(.conc_bound)" + (if .healthy_max == null then "" else "; healthy \(.healthy_max), bound \(.healthy_bound)" end) + ")"] | join(""))' <<<"$line")"
  while IFS= read -r f; do
    [ -n "$f" ] && fail "$phase jobs: $f"
  done < <(jq -r '.failures[]' <<<"$line")
}

# after_check checks every node serves without errors once the cluster is whole.
after_check() {
  local rc=0 targets
  targets=$(IFS=,; echo "${URLS[*]}")
  ctl "$LOADGEN" -config "$OUT/tiers.json" -targets "$targets" -mix "$MIX" -keys 24 \
    -c 8 -rate 300 -d 3s -json -quiet -fail-on-5xx >"$OUT/$SCENARIO-after.json" 2>"$OUT/$SCENARIO-after.err" || rc=$?
  eval_phase "$SCENARIO-after" "$rc" "$OUT/$SCENARIO-after.json"
}

others() { local i; for i in 0 1 2; do [ "$i" = "$1" ] || printf '%s ' "${URLS[$i]}"; done; }

# detect VICTIM FAULT-MS: the survivors must agree on 2 members within the
# deadline; the time is from the fault (now_ms at FAULT-MS).
detect() {
  local t
  # shellcheck disable=SC2046
  if wait_members "$DETECT_DEADLINE" 2 $(others "$1") >/dev/null; then
    t=$(secs_since "$2")
    say "  survivors see 2 alive ${t}s after the fault"
    fact detected_s "$t"
  else
    fail "survivors did not drop node $1 within ${DETECT_DEADLINE}s"
  fi
}

# check_nodes fails the scenario if a node the script did not stop has
# exited, or a node log shows a crash since the last check.
LOG_CRASHES=0
check_nodes() {
  local n i
  for i in 0 1 2; do
    if [ -n "${PIDS[$i]}" ] && ! kill -0 "${PIDS[$i]}" 2>/dev/null; then
      fail "node $i exited by itself; see $OUT/node-$i.log"
      PIDS[i]=""
    fi
  done
  n=$(cat "$OUT"/node-*.log | grep -cE '^(panic:|fatal error:)|DATA RACE' || true)
  if [ "$n" -gt "$LOG_CRASHES" ]; then
    fail "a node log shows a panic or a race; see $OUT/node-*.log"
    LOG_CRASHES=$n
  fi
}

# ---- scenarios ----------------------------------------------------------------------

scenario_kill() {
  local v=0 start
  begin_scenario kill "kill -9 node $v (the seed) under load, restart it under the same name"
  # shellcheck disable=SC2046
  loadgen_start kill-fault "$FAULT_S" $(others $v)
  sleep "$FAULT_AT"
  jobs_before kill-fault
  start=$(now_ms)
  kill -KILL "${PIDS[$v]}"
  wait "${PIDS[$v]}" 2>/dev/null || true
  PIDS[v]=""
  say "  killed node $v"
  detect $v "$start"
  loadgen_end kill-fault

  # shellcheck disable=SC2046
  loadgen_start kill-heal "$HEAL_S" $(others $v)
  sleep "$HEAL_AT"
  jobs_before kill-heal
  start_node $v
  say "  restarted node $v"
  converge
  hold
  loadgen_end kill-heal
  after_check
  check_nodes
  end_scenario
}

scenario_pause() {
  local v=1 start
  begin_scenario pause "kill -STOP node $v under load until the others declare it dead, then kill -CONT"
  # shellcheck disable=SC2046
  loadgen_start pause-fault "$FAULT_S" $(others $v)
  sleep "$FAULT_AT"
  jobs_before pause-fault
  kill -STOP "${PIDS[$v]}"
  start=$(now_ms)
  say "  paused node $v"
  detect $v "$start"
  loadgen_end pause-fault

  # shellcheck disable=SC2046
  loadgen_start pause-heal "$HEAL_S" $(others $v)
  sleep "$HEAL_AT"
  jobs_before pause-heal
  kill -CONT "${PIDS[$v]}"
  say "  resumed node $v after $(secs_since "$start")s"
  fact paused_s "$(secs_since "$start")"
  converge
  hold
  loadgen_end pause-heal
  after_check
  check_nodes
  end_scenario
}

scenario_partition() {
  local v=2 h start
  local a=${URLS[0]} b=${URLS[1]} c=${URLS[$v]}
  local -a loaded
  if [ "$MODE" = netns ]; then
    begin_scenario partition "cut node $v off from its peers (iptables DROP; clients reach both sides), DEGRADED on the majority side during the cut, heal"
    loaded=("${URLS[@]}")
  else
    begin_scenario partition "approximated by SIGSTOP of node $v (loopback mode), DEGRADED on the majority side during the cut, heal"
    loaded=("$a" "$b")
  fi
  # The cut drops, on the way in, every packet between node $v and its
  # peers, both ways, so senders see silence as on a real broken link (a
  # DROP on the way out would fail their sends with EPERM instead). The hub
  # (the clients) still reaches every node.
  cut_off() {
    local j
    if [ "$MODE" = netns ]; then
      for j in 0 1 2; do
        [ "$j" = "$v" ] && continue
        ip netns exec "$NS-n$v" iptables -A INPUT -s "10.77.0.$((j + 1))" -j DROP
        ip netns exec "$NS-n$j" iptables -A INPUT -s "10.77.0.$((v + 1))" -j DROP
      done
    else
      kill -STOP "${PIDS[$v]}"
    fi
  }
  heal_cut() {
    local j
    if [ "$MODE" = netns ]; then
      for j in 0 1 2; do ip netns exec "$NS-n$j" iptables -F INPUT; done
    else
      kill -CONT "${PIDS[$v]}"
    fi
  }

  loadgen_start partition-fault "$FAULT_S" "${loaded[@]}"
  sleep "$FAULT_AT"
  jobs_before partition-fault
  cut_off
  start=$(now_ms)
  say "  cut node $v off"
  detect $v "$start"
  if [ "$MODE" = netns ]; then
    if wait_members "$DETECT_DEADLINE" 1 "$c" >/dev/null; then
      say "  node $v sees only itself $(secs_since "$start")s after the cut"
    else
      fail "node $v did not drop its peers within ${DETECT_DEADLINE}s"
    fi
  fi
  loadgen_end partition-fault

  degrade_side "$a" "$b"
  if [ "$MODE" = netns ]; then
    h=$(health "$c")
    say "  node $v (cut off) reports: $h"
    fact cut_side_health "$(jq -cn --arg h "$h" '$h')"
    [ "${h%% *}" = NORMAL ] || fail "node $v is cut off but learnt the new state ($h): not a real partition"
  fi

  loadgen_start partition-heal "$HEAL_S" "${loaded[@]}"
  sleep "$HEAL_AT"
  heal_cut
  say "  healed after $(secs_since "$start")s"
  fact cut_s "$(secs_since "$start")"
  start=$(now_ms)
  converge
  agree_after_heal "$start" "$c"
  hold
  loadgen_end partition-heal

  # A write on the formerly cut-off node reaches everyone too.
  normal_from "$c"
  after_check
  check_nodes
  end_scenario
}

# scenario_rolling restarts the nodes one after the other within one window,
# with the same accuracy keys throughout: each restart is judged on its
# own, and the whole deploy once more, a key's admissions summed over the
# three phases.
scenario_rolling() {
  local v start
  begin_scenario rolling "a rolling deploy within one window: SIGTERM each node in turn under load, start it again, wait until the cluster is whole"
  KEYSET=rolling
  for v in 0 1 2; do
    # shellcheck disable=SC2046
    loadgen_start "rolling-$v" 15 $(others $v)
    sleep 4
    start=$(now_ms)
    kill -TERM "${PIDS[$v]}"
    wait "${PIDS[$v]}" 2>/dev/null || fail "node $v did not stop cleanly on SIGTERM"
    PIDS[v]=""
    say "  stopped node $v ($(secs_since "$start")s)"
    detect $v "$start"
    start_node $v
    wait_ready $v
    say "  restarted node $v"
    converge
    loadgen_end "rolling-$v"
  done
  KEYSET=""
  eval_phase rolling-deploy 0 "$OUT"/rolling-[012].json
  after_check
  check_nodes
  end_scenario
}

scenario_restart() {
  local v=2 start
  begin_scenario restart "kill -9 node $v between two loads of all nodes and start it again at once, as a supervisor does, before its peers notice"
  KEYSET=restart JOB_RC=0
  loadgen_start restart-0 "$FAULT_AT" "${URLS[@]}"
  loadgen_end restart-0
  jobs_before restart
  start=$(now_ms)
  kill -KILL "${PIDS[$v]}"
  wait "${PIDS[$v]}" 2>/dev/null || true
  start_node $v
  wait_ready $v
  say "  restarted node $v, ready $(secs_since "$start")s after the kill"
  loadgen_start restart-1 10 "${URLS[@]}"
  converge
  loadgen_end restart-1
  KEYSET=""
  eval_phase restart-total 0 "$OUT"/restart-[01].json
  [ ! -f "$OUT/jobkeys-restart.json" ] || eval_jobs restart-total "$JOB_RC" restart "$OUT"/restart-[01]-jobs.json
  hold
  after_check
  check_nodes
  end_scenario
}

for s in $SCENARIOS; do
  case $s in
  kill | pause | partition | rolling | restart) "scenario_$s" ;;
  *) die "CHAOS_SCENARIOS: unknown scenario $s" ;;
  esac
done

header=$(jq -cn --arg mode "$MODE" --argjson nodes "$NODES" --argjson rate "$RATE" --argjson keys "$KEYS" \
  --arg mix "$MIX" --arg started "$(date -u -d "@$CHAOS_T0" +%FT%TZ 2>/dev/null || date -u +%FT%TZ)" \
  '{kind: "processes", mode: $mode, nodes: $nodes, rate_per_s: $rate, accuracy_keys_per_tier: $keys, mix: $mix, started: $started}')
header=$(jq -c --arg mix "$JOB_MIX" --argjson rate "$JOB_RATE" --argjson keys "$JOB_KEYS" --arg work "$JOB_WORK" --argjson cost "$JOB_COST" \
  --arg tiers "$JOB_TIERS" --arg upstream "$UPSTREAM" \
  '. + {jobs: {tiers_file: $tiers, mix: $mix, rate_per_s: $rate, keys_per_tier: $keys, work: $work, cost: $cost, upstream: $upstream}}' <<<"$header")
say "done in $(($(date +%s) - CHAOS_T0))s"
finish_summary "$header"
