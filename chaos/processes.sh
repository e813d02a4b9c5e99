#!/usr/bin/env bash
# chaos/processes.sh: three chaos scenarios against a 3-node cluster of plain
# processes, with loadgen judging every request. CI runs it.
#
#   chaos/processes.sh            # about 3.5 minutes; exit 0 only if every check passed
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
#   CHAOS_NO_BUILD=1  use bin/node and bin/loadgen as they are
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
NAMESPACES=""

cleanup() {
  local rc=$? p i
  trap - EXIT INT TERM
  for p in $LG_PIDS; do kill -KILL "$p" 2>/dev/null || true; done
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
  wait 2>/dev/null || true
  for n in $NAMESPACES; do ip netns del "$n" 2>/dev/null || true; done
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- build and keys -----------------------------------------------------------

if [ "${CHAOS_NO_BUILD:-}" != 1 ]; then
  say "building bin/node and bin/loadgen"
  CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o bin/node ./cmd/node
  (cd bench && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$ROOT/bin/loadgen" ./loadgen) # in the bench module (bench/go.mod)
fi
NODE_BIN=$ROOT/bin/node
LOADGEN=$ROOT/bin/loadgen

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
jq -s 'reduce .[1:][] as $f (.[0]; .api_keys += $f.api_keys)' "$OUT"/keys-*.json >"$OUT/tiers.json"

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

start_node() {
  local i=$1 args
  args=(-config "$OUT/tiers.json" -node-name "chaos-n$i" -admin-token "$TOKEN"
    -cluster-key "$CLUSTER_SECRET" -log-format json -shutdown-grace 2s)
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
  local phase=$1 secs=$2 targets
  shift 2
  targets=$(IFS=,; echo "$*")
  ${CTL[@]+"${CTL[@]}"} "$LOADGEN" -config "$OUT/keys-${KEYSET:-$phase}.json" -targets "$targets" -mix "$MIX" \
    -accuracy-keys "$KEYS" -c 16 -rate "$RATE" -d "${secs}s" -json -quiet -fail-on-5xx \
    >"$OUT/$phase.json" 2>"$OUT/$phase.err" &
  LG=$!
  LG_PIDS="$LG_PIDS $LG"
}

# loadgen_end PHASE waits for the run started last and judges it.
loadgen_end() {
  local rc=0
  wait "$LG" || rc=$?
  LG_PIDS=${LG_PIDS/ $LG/}
  eval_phase "$1" "$rc" "$OUT/$1.json"
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
  kill -STOP "${PIDS[$v]}"
  start=$(now_ms)
  say "  paused node $v"
  detect $v "$start"
  loadgen_end pause-fault

  # shellcheck disable=SC2046
  loadgen_start pause-heal "$HEAL_S" $(others $v)
  sleep "$HEAL_AT"
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
  KEYSET=restart
  loadgen_start restart-0 "$FAULT_AT" "${URLS[@]}"
  loadgen_end restart-0
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
say "done in $(($(date +%s) - CHAOS_T0))s"
finish_summary "$header"
