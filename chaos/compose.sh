#!/usr/bin/env bash
# chaos/compose.sh: the chaos scenarios of processes.sh against the compose
# cluster (docker-compose.yml, 3 replicas), with loadgen running inside the
# compose network as the `loadgen` service (chaos/compose.chaos.yml).
#
#   chaos/compose.sh              # about 3 minutes; exit 0 only if every check passed
#
# Scenarios, each with a fault phase and a heal phase of load (fresh keys
# each), sent to the surviving containers' IPs only, and a short load on
# all three afterwards:
#   kill       docker kill (SIGKILL) one replica, then docker start it again
#   pause      docker pause one replica (the freezer cgroup, what `compose
#              pause` does to every replica of a service) until the others
#              declare it dead, then docker unpause
#   partition  docker network disconnect one replica from the compose network
#              (a real cut: it has no network left), with a second loadgen
#              inside its network namespace on 127.0.0.1 so both sides are
#              loaded; DEGRADED on the majority side during the cut; then
#              docker network connect --alias node --ip <its old address>
# It also asks Docker's embedded DNS, through loadgen -dns, what the service
# name resolves to during each fault.
#
# Uses `docker compose` if the plugin exists, else docker-compose. The project
# is named tlchaos<pid>, so it never touches another compose project; on
# exit it is taken down with its volumes and network. Needs Docker on Linux
# (the host reaches the containers' IPs), go, curl, jq; reading the view of
# the disconnected replica needs root (nsenter into its network namespace).
#
# Environment (all optional): CHAOS_OUT, CHAOS_RATE (default 600),
# CHAOS_KEYS (default 12), CHAOS_SCENARIOS (default "kill pause partition"),
# CHAOS_NO_BUILD=1 (use bin/ and the images as they are).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

NODES=3
TOKEN="chaos-$$-$RANDOM$RANDOM"
RATE=${CHAOS_RATE:-600}
KEYS=${CHAOS_KEYS:-12}
SCENARIOS=${CHAOS_SCENARIOS:-kill pause partition}
MIX=free=30,pro=70
FAULT_S=20
FAULT_AT=6
HEAL_S=22
HEAL_AT=5
DETECT_DEADLINE=30
CONVERGE_DEADLINE=60
OUT=${CHAOS_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/tierlimit-chaos-compose.XXXXXX")}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
chmod 755 "$OUT" # the nodes run as uid 65532 and read tiers.json from it
: >"$OUT/phases.jsonl"
: >"$OUT/scenarios.jsonl"

# shellcheck source=chaos/lib.sh
. "$ROOT/chaos/lib.sh"
need docker go curl jq

if docker compose version >/dev/null 2>&1; then
  COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  COMPOSE=(docker-compose)
else
  die "needs docker compose or docker-compose"
fi
docker info >/dev/null 2>&1 || die "no Docker engine reachable"
P="tlchaos$$"
NET="${P}_mesh"
export CHAOS_DIR=$OUT ADMIN_TOKEN=$TOKEN CLUSTER_KEY="chaos-key-$$-$RANDOM$RANDOM$RANDOM"
# DC is the compose command for this project: an array, not a function, so
# that `"${DC[@]}" run ... &` is one process whose PID $! is.
DC=("${COMPOSE[@]}" -p "$P" -f docker-compose.yml -f chaos/compose.chaos.yml)
dc() { "${DC[@]}" "$@"; }
say "using ${COMPOSE[*]}, project $P, run directory $OUT"

# ---- cleanup ------------------------------------------------------------------------

BG_PIDS=""
cleanup() {
  local rc=$? p c
  trap - EXIT INT TERM
  for p in $BG_PIDS; do kill -TERM "$p" 2>/dev/null || true; done
  for c in $(docker ps -q --filter "label=com.docker.compose.project=$P" --filter status=paused 2>/dev/null); do
    docker unpause "$c" >/dev/null 2>&1 || true
  done
  if [ -n "${NODE_CIDS:-}" ]; then
    for c in $NODE_CIDS; do docker logs -t "$c" >"$OUT/node-${c:0:12}.log" 2>&1 || true; done
  fi
  for c in $(docker ps -aq --filter "label=tlchaos=$P" 2>/dev/null); do docker rm -f "$c" >/dev/null 2>&1 || true; done
  dc down -v --remove-orphans -t 3 >"$OUT/down.log" 2>&1 || true
  for c in $(docker ps -aq --filter "label=com.docker.compose.project=$P" 2>/dev/null); do
    docker rm -f "$c" >/dev/null 2>&1 || true
  done
  docker network rm "$NET" >/dev/null 2>&1 || true
  for p in $BG_PIDS; do kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- build --------------------------------------------------------------------------

if [ "${CHAOS_NO_BUILD:-}" != 1 ]; then
  say "building bin/node, bin/loadgen and the images tierlimit:dev, tierlimit-loadgen:dev"
  CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o bin/node ./cmd/node
  (cd bench && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$ROOT/bin/loadgen" ./loadgen) # in the bench module (bench/go.mod)
  docker build -q -t tierlimit:dev . >/dev/null
  mkdir -p "$OUT/loadgen-image"
  cp bin/loadgen "$OUT/loadgen-image/"
  docker build -q -t tierlimit-loadgen:dev -f chaos/loadgen.Dockerfile "$OUT/loadgen-image" >/dev/null
  rm -rf "$OUT/loadgen-image"
fi

PHASES=""
for s in $SCENARIOS; do PHASES="$PHASES $s-fault $s-heal"; done
for p in $PHASES; do
  bin/loadgen -config config/tiers.json -gen-config "$OUT/keys-$p.json" -gen-keys "$KEYS" >/dev/null
done
jq -s 'reduce .[1:][] as $f (.[0]; .api_keys += $f.api_keys)' "$OUT"/keys-*.json >"$OUT/tiers.json"
chmod 644 "$OUT"/*.json

# ---- the cluster ----------------------------------------------------------------------

# The chaos network gets a fixed /24 (CHAOS_SUBNET, in the overlay) so that
# a disconnected container can be given its address back; picked at random
# in 172.31.0.0/16, one of Docker's default pools, until one is free.
for attempt in 1 2 3 4 5 6; do
  export CHAOS_SUBNET="172.31.$((RANDOM % 254 + 1)).0/24"
  say "docker-compose up -d --scale node=3 (network $NET, $CHAOS_SUBNET)"
  if dc up -d --scale node=3 node >"$OUT/up.log" 2>&1; then break; fi
  grep -qi overlap "$OUT/up.log" && [ $attempt -lt 6 ] || { cat "$OUT/up.log" >&2; die "compose up failed"; }
  dc down -v >/dev/null 2>&1 || true
done
NODE_CIDS=$(dc ps -q node | sort)
[ "$(wc -w <<<"$NODE_CIDS")" = 3 ] || die "expected 3 node containers, got: $NODE_CIDS"
# shellcheck disable=SC2206
CIDS=($NODE_CIDS)

# ip CID prints the container's address on the compose network (empty when
# it is not on it).
ip_of() {
  docker inspect -f "{{with index .NetworkSettings.Networks \"$NET\"}}{{.IPAddress}}{{end}}" "$1" 2>/dev/null || true
}
URLS=()
refresh_urls() {
  local i
  for i in 0 1 2; do URLS[i]="http://$(ip_of "${CIDS[$i]}"):8080"; done
}
refresh_urls

# ctl_curl runs curl on the host, which reaches the containers' IPs on the
# compose bridge; with CURL_NS_PID set, inside that process's network
# namespace instead (the view of a disconnected container, on 127.0.0.1).
ctl_curl() {
  if [ -n "${CURL_NS_PID:-}" ]; then
    nsenter -t "$CURL_NS_PID" -n curl "$@"
  else
    curl "$@"
  fi
}

start=$(now_ms)
for i in 0 1 2; do
  until curl -fsS -m 1 "${URLS[$i]}/readyz" >/dev/null 2>&1; do
    [ $(($(now_ms) - start)) -lt 60000 ] || die "container ${CIDS[$i]:0:12} not ready after 60s"
    sleep 0.2
  done
done
t=$(wait_members 30 3 "${URLS[@]}") || die "the cluster did not form within 30s"
say "cluster formed: ${URLS[*]} (3 alive everywhere ${t}s after ready)"

# ---- loadgen --------------------------------------------------------------------------

# loadgen_start PHASE SECONDS URL... starts a judged run in the compose
# network (the loadgen service) and sets LG to the PID of its client.
loadgen_start() {
  local phase=$1 secs=$2 targets
  shift 2
  targets=$(IFS=,; echo "$*")
  "${DC[@]}" run --rm -T -l "tlchaos=$P" loadgen -config "/chaos/keys-$phase.json" -targets "$targets" -mix "$MIX" \
    -accuracy-keys "$KEYS" -c 16 -rate "$RATE" -d "${secs}s" -json -quiet -fail-on-5xx \
    >"$OUT/$phase.json" 2>"$OUT/$phase.err" </dev/null &
  LG=$!
  BG_PIDS="$BG_PIDS $LG"
}

# loadgen_inside CID PHASE SECONDS RATE starts a judged run inside the
# container's network namespace, against its node on 127.0.0.1, and sets
# LG2 to the PID of its client.
loadgen_inside() {
  local cid=$1 phase=$2 secs=$3 rate=$4
  docker run --rm -l "tlchaos=$P" --network "container:$cid" -v "$OUT:/chaos:ro" tierlimit-loadgen:dev \
    -config "/chaos/keys-$phase.json" -targets http://127.0.0.1:8080 -mix "$MIX" \
    -accuracy-keys "$KEYS" -c 8 -rate "$rate" -d "${secs}s" -json -quiet -fail-on-5xx \
    >"$OUT/$phase-inside.json" 2>"$OUT/$phase-inside.err" </dev/null &
  LG2=$!
  BG_PIDS="$BG_PIDS $LG2"
}

# loadgen_end PHASE waits for the run started last and judges it.
loadgen_end() {
  loadgen_wait "$LG"
  eval_phase "$1" "$RC" "$OUT/$1.json"
}

# loadgen_wait PID waits for a run and sets RC to its exit code (not in a
# subshell: only this shell can wait for its children).
loadgen_wait() {
  RC=0
  wait "$1" || RC=$?
  BG_PIDS=${BG_PIDS/ $1/}
}

after_check() {
  local rc targets
  targets=$(IFS=,; echo "${URLS[*]}")
  rc=0
  dc run --rm -T -l "tlchaos=$P" loadgen -config /chaos/tiers.json -targets "$targets" -mix "$MIX" -keys 24 \
    -c 8 -rate 300 -d 3s -json -quiet -fail-on-5xx >"$OUT/$SCENARIO-after.json" 2>"$OUT/$SCENARIO-after.err" </dev/null || rc=$?
  eval_phase "$SCENARIO-after" "$rc" "$OUT/$SCENARIO-after.json"
}

# dns_probe LABEL asks Docker's embedded DNS, from the loadgen service, what
# "node" resolves to, and records the answer as a fact.
dns_probe() {
  local got
  got=$(dc run --rm -T -l "tlchaos=$P" loadgen -config /chaos/tiers.json -dns node:8080 -n 1 -timeout 300ms \
    -json -quiet </dev/null 2>/dev/null | jq -c '[.targets[] | ltrimstr("http://") | rtrimstr(":8080")]' 2>/dev/null || echo null)
  say "  DNS: node resolves to ${got} ($1)"
  fact "dns_$1" "$got"
}

others() { local i; for i in 0 1 2; do [ "$i" = "$1" ] || printf '%s ' "${URLS[$i]}"; done; }

detect() {
  local t
  # shellcheck disable=SC2046
  if wait_members "$DETECT_DEADLINE" 2 $(others "$1") >/dev/null; then
    t=$(secs_since "$2")
    say "  survivors see 2 alive ${t}s after the fault"
    fact detected_s "$t"
  else
    fail "survivors did not drop ${CIDS[$1]:0:12} within ${DETECT_DEADLINE}s"
  fi
}

check_logs() {
  local c n=0
  for c in $NODE_CIDS; do
    n=$((n + $(docker logs "$c" 2>&1 | grep -cE '^(panic:|fatal error:)|DATA RACE' || true)))
  done
  if [ "$n" -gt "${LOG_CRASHES:-0}" ]; then
    fail "a node log shows a panic or a race (docker logs)"
    LOG_CRASHES=$n
  fi
}

# member_name prints the member name of container $1: its container name,
# which the node takes from reverse DNS (NODE_NAME_FROM_DNS in
# docker-compose.yml).
member_name() {
  docker inspect -f '{{.Name}}' "$1" | sed 's|^/||'
}

# check_addresses fails the scenario if a member advertises a gossip
# address other than its container's address on the network (as seen by
# the first node).
check_addresses() {
  local cid name ip adv
  for cid in "${CIDS[@]}"; do
    name=$(member_name "$cid")
    ip=$(ip_of "$cid")
    adv=$(curl -fsS -m 2 -H "Authorization: Bearer $TOKEN" "${URLS[0]}/system/cluster" 2>/dev/null |
      jq -r --arg n "$name" '.members[] | select(.name == $n) | .gossip_addr' 2>/dev/null || true)
    if [ "${adv%:*}" != "$ip" ]; then
      fail "$name advertises ${adv:-nothing} to its peers, but its container is at $ip"
    fi
  done
}

# conflicts prints how many times the nodes' logs say memberlist refused a
# member because its name came back at another address.
conflicts() {
  local c n=0
  for c in $NODE_CIDS; do
    n=$((n + $(docker logs "$c" 2>&1 | grep -c 'Conflicting address' || true)))
  done
  echo $n
}

# ---- scenarios ----------------------------------------------------------------------

scenario_kill() {
  local v=0 c=${CIDS[0]} old new n start
  begin_scenario kill "docker kill ${c:0:12} under load, then docker start it"
  old=$(ip_of "$c")
  # shellcheck disable=SC2046
  loadgen_start kill-fault "$FAULT_S" $(others $v)
  sleep "$FAULT_AT"
  start=$(now_ms)
  docker kill "$c" >/dev/null
  say "  killed ${c:0:12} ($old)"
  dns_probe after_kill
  detect $v "$start"
  loadgen_end kill-fault

  # shellcheck disable=SC2046
  loadgen_start kill-heal "$HEAL_S" $(others $v)
  sleep "$HEAL_AT"
  docker start "$c" >/dev/null
  refresh_urls
  new=$(ip_of "$c")
  say "  started ${c:0:12} again, at $new"
  fact restarted_ip "$(jq -cn --arg o "$old" --arg n "$new" '{before: $o, after: $n}')"
  n=$(conflicts)
  converge
  fact conflicting_address_logs $(($(conflicts) - n))
  hold
  check_addresses
  loadgen_end kill-heal
  after_check
  check_logs
  end_scenario
}

scenario_pause() {
  local v=1 c=${CIDS[1]} start
  begin_scenario pause "docker pause ${c:0:12} under load until the others declare it dead, then docker unpause"
  # shellcheck disable=SC2046
  loadgen_start pause-fault "$FAULT_S" $(others $v)
  sleep "$FAULT_AT"
  docker pause "$c" >/dev/null
  start=$(now_ms)
  say "  paused ${c:0:12}"
  dns_probe while_paused
  detect $v "$start"
  loadgen_end pause-fault

  # shellcheck disable=SC2046
  loadgen_start pause-heal "$HEAL_S" $(others $v)
  sleep "$HEAL_AT"
  docker unpause "$c" >/dev/null
  say "  unpaused ${c:0:12} after $(secs_since "$start")s"
  fact paused_s "$(secs_since "$start")"
  converge
  hold
  loadgen_end pause-heal
  after_check
  check_logs
  end_scenario
}

scenario_partition() {
  local v=2 c=${CIDS[2]} rc rc2 h start pid old new n holder
  local a=${URLS[0]} b=${URLS[1]}
  begin_scenario partition "docker network disconnect ${c:0:12} under load (loaded on both sides), DEGRADED on the majority side during the cut, docker network connect"
  old=$(ip_of "$c")
  pid=$(docker inspect -f '{{.State.Pid}}' "$c")
  loadgen_start partition-fault "$FAULT_S" "$a" "$b"
  loadgen_inside "$c" partition-fault "$FAULT_S" $((RATE / 2))
  sleep "$FAULT_AT"
  docker network disconnect "$NET" "$c"
  start=$(now_ms)
  # Hold the cut-off node's address while it is away, so that no container
  # started meanwhile (a loadgen run) takes it: after a real partition a
  # host keeps its address. The holder is a node listening on its own
  # loopback only, so the peers re-joining the old address are refused.
  holder=$(docker run -d -l "tlchaos=$P" --network "$NET" --ip "$old" tierlimit:dev \
    -http-addr 127.0.0.1:8080 -grpc-addr 127.0.0.1:9090 -gossip-addr 127.0.0.1:7946 -admin-token "$TOKEN")
  say "  disconnected ${c:0:12} ($old) from $NET"
  dns_probe while_disconnected
  detect $v "$start"
  if [ "$(id -u)" = 0 ]; then
    if CURL_NS_PID=$pid wait_members "$DETECT_DEADLINE" 1 http://127.0.0.1:8080 >/dev/null; then
      say "  ${c:0:12} sees only itself $(secs_since "$start")s after the cut"
    else
      fail "${c:0:12} did not drop its peers within ${DETECT_DEADLINE}s"
    fi
  fi
  loadgen_wait "$LG"
  rc=$RC
  loadgen_wait "$LG2"
  rc2=$RC
  eval_phase partition-fault $((rc | rc2)) "$OUT/partition-fault.json" "$OUT/partition-fault-inside.json"

  degrade_side "$a" "$b"
  if [ "$(id -u)" = 0 ]; then
    h=$(CURL_NS_PID=$pid health http://127.0.0.1:8080)
    say "  ${c:0:12} (cut off) reports: $h"
    fact cut_side_health "$(jq -cn --arg h "$h" '$h')"
    [ "${h%% *}" = NORMAL ] || fail "${c:0:12} is cut off but learnt the new state ($h)"
  fi

  loadgen_start partition-heal "$HEAL_S" "$a" "$b"
  loadgen_inside "$c" partition-heal "$HEAL_S" $((RATE / 2))
  sleep "$HEAL_AT"
  # A healed partition gives the node its address back: connect asks for
  # the old IP (the chaos network has a fixed subnet, so it may), and for
  # the service name as an alias, which compose had given it, so that
  # "node" resolves to it again. If the IP was taken meanwhile, it comes
  # back at another, which its memberlist does not learn (check_addresses).
  docker rm -f "$holder" >/dev/null
  if ! docker network connect --alias node --ip "$old" "$NET" "$c" 2>"$OUT/connect.err"; then
    say "  cannot reconnect at $old ($(cat "$OUT/connect.err")); connecting at a new address"
    docker network connect --alias node "$NET" "$c"
  fi
  refresh_urls
  new=$(ip_of "$c")
  say "  reconnected ${c:0:12} after $(secs_since "$start")s, at $new"
  fact cut_s "$(secs_since "$start")"
  fact reconnected_ip "$(jq -cn --arg o "$old" --arg n "$new" '{before: $o, after: $n}')"
  start=$(now_ms)
  n=$(conflicts)
  converge
  fact conflicting_address_logs $(($(conflicts) - n))
  agree_after_heal "$start" "${URLS[2]}"
  hold
  check_addresses
  loadgen_wait "$LG"
  rc=$RC
  loadgen_wait "$LG2"
  rc2=$RC
  eval_phase partition-heal $((rc | rc2)) "$OUT/partition-heal.json" "$OUT/partition-heal-inside.json"

  normal_from "${URLS[2]}"
  after_check
  check_logs
  end_scenario
}

for s in $SCENARIOS; do
  case $s in
  kill | pause | partition) "scenario_$s" ;;
  *) die "CHAOS_SCENARIOS: unknown scenario $s" ;;
  esac
done

header=$(jq -cn --arg compose "${COMPOSE[*]}" --arg engine "$(docker version -f '{{.Server.Version}}' 2>/dev/null)" \
  --argjson nodes "$NODES" --argjson rate "$RATE" --argjson keys "$KEYS" --arg mix "$MIX" \
  '{kind: "compose", compose: $compose, docker_engine: $engine, nodes: $nodes, rate_per_s: $rate, accuracy_keys_per_tier: $keys, mix: $mix}')
say "done in $(($(date +%s) - CHAOS_T0))s"
finish_summary "$header"
