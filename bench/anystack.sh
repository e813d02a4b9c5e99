#!/usr/bin/env bash
# bench/anystack.sh: tierlimit in front of services in any language,
# measured side by side in one run, on loopback and the same CPUs.
#
#   bench/anystack.sh          full run (about 7.5 minutes on a quiet machine,
#                              at most about 16 on a busy one): writes the
#                              results section of docs/anystack.md
#   bench/anystack.sh --quick  smoke run (about 2 minutes, and the first
#                              build): results stay in bench/out/anystack
#   bench/anystack.sh -h       this text
#
# (a) The reverse proxy. bench/loadgen sends GET /test to a Go upstream
#     (bench/floor) directly, and through cmd/node -upstream to the same
#     upstream, at c=1 (the proxy's added latency, p50 and p99) and c=64
#     (throughput), with enterprise keys whose limit never binds. Then a
#     200 MB upload (curl -T from a file, POST /upload, which the upstream
#     reads and discards), direct and through the proxy: the time each
#     took, and the node's VmRSS before and VmHWM (peak RSS) after, the
#     peak reset before each upload (/proc/<pid>/clear_refs).
# (b) FastAPI three ways, each three uvicorn processes (one port each) with
#     the load round-robin over them (bench/fastapi):
#       bare       no limiter;
#       tierlimit  TierLimitMiddleware (python/tierlimit), each uvicorn
#                  asking its own cmd/node of one 3-node cluster (default
#                  flags);
#       redis      a middleware over one central redis-server: GET the
#                  health key, INCR + EXPIRE the key's fixed-window counter,
#                  one pipelined round trip (bench/fastapi/redislimit.py).
#     Each at c=1 and c=64 over 500 enterprise keys, then the three again
#     at c=1 over 30 hot keys, each seen often enough by each node to be
#     leased (r_k × τ / N ≥ 1.7, with r_k a key's requests a second, τ the
#     1 s lease, N = 3 nodes); with the CPU seconds the uvicorns, nodes and
#     redis-server used (/proc/<pid>/stat). Then an accuracy run of each
#     limiter with fresh keys (loadgen -accuracy-keys). The Redis stack's
#     accuracy run is timed to stay inside one fixed window; a full run
#     adds one across a window's end, where fixed windows admit up to 2×L.
# (c) nginx forward auth. nginx (worker_processes auto) in front of the
#     same upstream, twice: with bench/nginx/plain.conf (the shipped
#     file's server without the check) and with examples/nginx/nginx.conf
#     as shipped (auth_request to /authorize of one cmd/node, default
#     flags), both filled by envsubst and started as docs/forward-auth.md
#     shows; at c=1 and c=64 with the CPU seconds of nginx (master and
#     workers), the node, the upstream and loadgen.
# Then the profiles that explain a missed target: a Go CPU profile of the
# proxy node at c=1 and of the tierlimit stack's node n1 at c=1 and c=64
# (cmd/node built with bench/pprof.go.in overlaid, as bench/run.sh
# --profile does: the binary serves pprof on a port of its own only where
# BENCH_PPROF_ADDR is set), and a cProfile of one uvicorn of each limiter
# stack at c=64 (bench/fastapi/app.py: SIGUSR1 starts it, SIGUSR2 writes
# it).
#
# Every node, uvicorn and loadgen reads the same tiers file, with fresh
# keys for every run (loadgen -gen-config, bench/report keys). Every
# process the script starts is stopped by PID when it exits (nginx's
# workers too). Needs go, curl, redis-server, nginx and envsubst (Debian:
# nginx, gettext-base), and /usr/bin/python3 with fastapi, uvicorn and
# redis (redis.asyncio): Debian's python3-fastapi, python3-uvicorn,
# python3-redis.
#
# Smoke checks, a quick run's too: the script exits 1, after writing the
# results, naming the run, if any measured run (load or accuracy, of any
# stack) had a response other than 200 or 429 (5xx, 401, other 4xx) or a
# transport error, if an upload did not answer 200, or if more than 2 %
# of the 200s and 429s of a stack with a tierlimit node (the proxy,
# TierLimitMiddleware, nginx with the check) lacked X-RateLimit-Limit; a
# full run then leaves docs/anystack.md alone. Latency, throughput and
# accuracy are reported, never checked.
#
# Environment: ANYSTACK_PORT (default 24400) is the first of the loopback
# ports used, ANYSTACK_PORT .. ANYSTACK_PORT+39. On a shared machine a full
# run waits before each measured run, ANYSTACK_QUIET_WAIT seconds at most
# (default 30), for other programs to leave the CPUs, and redoes (once) a
# run during which they took more than ANYSTACK_MAX_OTHERS percent of the
# machine (default 15), keeping the cleaner try; ANYSTACK_QUIET_BUDGET
# (default 240) bounds the waiting of the whole run.
#
# Experiments: ANYSTACK_NODE_FLAGS (more flags for every cmd/node, such as
# "-lease-ttl 5s") and ANYSTACK_NODE_ENV (KEY=value words for every
# cmd/node's environment, such as "GOMAXPROCS=1"). A full run with either
# set leaves docs/anystack.md alone: its results stay in bench/out/anystack.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)

MODE=full
case "${1:-}" in
  "") ;;
  --quick) MODE=quick ;;
  -h|--help) sed -n '2,/^set -euo/{/^set -euo/!p}' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "bench/anystack.sh: unknown argument $1 (want --quick, -h or nothing)" >&2; exit 2 ;;
esac
[ $# -le 1 ] || { echo "bench/anystack.sh: one argument at most" >&2; exit 2; }

case $MODE in
  full)  DUR=10; WARM=2; TRIES=2; UPLOAD_RUNS=3; PROF_SECS=8; QUIET_WAIT=${ANYSTACK_QUIET_WAIT:-30} ;;
  quick) DUR=3;  WARM=1; TRIES=1; UPLOAD_RUNS=1; PROF_SECS=3; QUIET_WAIT=0 ;;
esac
MAX_OTHERS=${ANYSTACK_MAX_OTHERS:-15}
QUIET_BUDGET=${ANYSTACK_QUIET_BUDGET:-240}
LOAD_KEYS=500                   # enterprise keys per load run (L = 1500 each): the limit never binds
HOT_KEYS=30                     # enterprise keys of the hot-key runs: at c=1, about 1,000 req/s over 30 keys
                                # is r_k ≈ 33/s, r_k × 1 s / 3 nodes ≈ 11 ≥ 1.7, and at most about 600 per key in a run: under L
ACC_KEYS=5                      # accuracy keys per tier
ACC_MIX=free=5,pro=15,enterprise=80
ACC_N=12000                     # per accuracy run: 120 per free key (L=20), 360 per pro (L=150), 1920 per enterprise (L=1500)
ACC_MAX=25                      # seconds an accuracy run may take
EDGE_LEAD=8                     # the run across a window's end starts this many seconds before it
EDGE_DUR=16
UPLOAD_MB=200
CONCURRENCY=(1 64)
TOKEN=bench-admin-token
PY=/usr/bin/python3
export PYTHONDONTWRITEBYTECODE=1  # no __pycache__ in the checkout

OUT=$ROOT/bench/out
BIN=$OUT/bin
RUN=$OUT/anystack
LOGS=$RUN/logs
PROF=$RUN/profiles
PORT=${ANYSTACK_PORT:-24400}
STARTED=$SECONDS

log() { printf '%s anystack: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

# ---------------------------------------------------------------- processes

PIDS=()    # the servers, by start order
NAMES=()
AUX=()     # background helpers (loadgen, curl) of the profile runs

# start NAME CMD...: runs CMD in the background, logging to $LOGS/NAME.log.
start() {
  local name=$1; shift
  "$@" >"$LOGS/$name.log" 2>&1 &
  PIDS+=($!)
  NAMES+=("$name")
}

# children NAME PID: sets KIDS to the PIDs of the nginx workers of the
# master PID started as NAME; to none for the other processes, which have
# no children of their own. (Not in a $(…): it runs for every process
# whenever CPU is counted.)
children() {
  KIDS=()
  case $1 in
    ngx-plain|ngx-auth) read -ra KIDS 2>/dev/null <"/proc/$2/task/$2/children" || true ;;
  esac
}

cleanup() {
  local rc=$? pid deadline i workers=() KIDS=()
  trap - EXIT INT TERM
  for pid in "${AUX[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  if [ ${#PIDS[@]} -gt 0 ]; then
    log "stopping ${#PIDS[@]} processes"
    # nginx's workers, to kill if their master dies without them.
    for i in "${!NAMES[@]}"; do
      children "${NAMES[$i]}" "${PIDS[$i]}"
      workers+=("${KIDS[@]}")
    done
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    deadline=$((SECONDS + 10))
    for pid in "${PIDS[@]}" "${AUX[@]}"; do
      while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
      if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
      wait "$pid" 2>/dev/null || true
    done
    # Normally gone with their master; one left (its master killed) still
    # has the name nginx.
    for pid in "${workers[@]}"; do
      [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = nginx ] && { kill -KILL "$pid" 2>/dev/null || true; }
    done
  fi
  rm -f "$RUN/upload.bin"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# pid_of NAME: prints the PID of the process started as NAME.
pid_of() {
  local i
  for i in "${!NAMES[@]}"; do
    [ "${NAMES[$i]}" = "$1" ] && { echo "${PIDS[$i]}"; return 0; }
  done
  die "no process named $1"
}

# alive NAME: fails, with the end of its log, if the process NAME has exited.
alive() {
  kill -0 "$(pid_of "$1")" 2>/dev/null && return 0
  log "$1 exited; end of $LOGS/$1.log:"; tail -n 20 "$LOGS/$1.log" >&2
  return 1
}

# wait_http NAME URL [ANY]: polls URL until it answers 2xx (with ANY: any
# HTTP status, for an app that checks keys on every path), for at most 60 s
# (nine Python processes starting at once on a busy machine take a while).
wait_http() {
  local name=$1 url=$2 any=${3:-} deadline=$((SECONDS + 60)) code
  while :; do
    code=$(curl -sS --max-time 1 -o /dev/null -w '%{http_code}' "$url" 2>/dev/null) || code=000
    case $code in
      2??) return 0 ;;
      000) ;;
      *) [ -n "$any" ] && return 0 ;;
    esac
    alive "$name" || die "$name did not start"
    [ $SECONDS -lt $deadline ] || { tail -n 20 "$LOGS/$name.log" >&2; die "$name not ready at $url after 60 s"; }
    sleep 0.1
  done
}

# wait_members N URL...: polls each node's /system/cluster until it lists N
# alive members, for at most 30 s.
wait_members() {
  local want=$1; shift
  local deadline=$((SECONDS + 30)) url n
  for url in "$@"; do
    while :; do
      n=$(curl -fsS --max-time 1 -H "Authorization: Bearer $TOKEN" "$url/system/cluster" 2>/dev/null |
        grep -o '"state":"alive"' | wc -l) || n=0
      [ "$n" -ge "$want" ] && break
      [ $SECONDS -lt $deadline ] || die "$url sees $n alive members after 30 s, want $want"
      sleep 0.2
    done
  done
}

# wait_file PATH: waits, at most 20 s, until PATH exists and is not empty.
wait_file() {
  local deadline=$((SECONDS + 20))
  until [ -s "$1" ]; do
    [ $SECONDS -lt $deadline ] || die "$1 not written after 20 s"
    sleep 0.1
  done
}

# port_free PORT: fails if something listens on PORT (TCP or UDP).
port_free() {
  ! ss -Hltun "( sport = :$1 )" 2>/dev/null | grep -q .
}

# ---------------------------------------------------------------- set-up

rm -rf "$RUN"
mkdir -p "$BIN" "$LOGS" "$RUN/results" "$RUN/keys" "$PROF"

command -v go >/dev/null || die "go is not on PATH"
command -v curl >/dev/null || die "curl is not on PATH"
command -v redis-server >/dev/null || die "redis-server is not installed (Debian: apt-get install redis-server)"
NGINX=$(command -v nginx || true)
[ -z "$NGINX" ] && [ -x /usr/sbin/nginx ] && NGINX=/usr/sbin/nginx  # Debian's, off a non-root PATH
[ -n "$NGINX" ] || die "nginx is not installed (Debian: apt-get install nginx)"
command -v envsubst >/dev/null || die "envsubst is not on PATH (Debian: apt-get install gettext-base)"
"$PY" -c 'import fastapi, uvicorn, redis.asyncio' 2>/dev/null ||
  die "$PY lacks fastapi, uvicorn or redis.asyncio (Debian: apt-get install python3-fastapi python3-uvicorn python3-redis)"
[ -f python/tierlimit/__init__.py ] || die "python/tierlimit is missing"
PYTHONPATH=$ROOT/python "$PY" -c 'from tierlimit import TierLimitMiddleware' 2>/dev/null ||
  die "python/tierlimit does not export TierLimitMiddleware"

log "building into $BIN"
# The tools are the bench module's (bench/go.mod), built from inside it.
(cd bench && go build -trimpath -o "$BIN/" ./loadgen ./floor ./report ./anystack)
# cmd/node with net/http/pprof on BENCH_PPROF_ADDR, where it is set,
# overlaid so that cmd/node itself stays untouched.
printf '{"Replace":{"%s":"%s"}}\n' "$ROOT/cmd/node/zz_bench_pprof.go" "$ROOT/bench/pprof.go.in" >"$RUN/overlay.json"
go build -trimpath -overlay "$RUN/overlay.json" -o "$BIN/node-pprof" ./cmd/node
NODE=$BIN/node-pprof

# Ports, all on loopback.
FLOOR_HTTP=$PORT
PROXY_HTTP=$((PORT + 1)); PROXY_GRPC=$((PORT + 2)); PROXY_GOSSIP=$((PORT + 3)); PROXY_PPROF=$((PORT + 4))
REDIS_PORT=$((PORT + 5))
BARE_HTTP=($((PORT + 10)) $((PORT + 11)) $((PORT + 12)))
TLAPP_HTTP=($((PORT + 13)) $((PORT + 14)) $((PORT + 15)))
RDAPP_HTTP=($((PORT + 16)) $((PORT + 17)) $((PORT + 18)))
CL_HTTP=($((PORT + 20)) $((PORT + 21)) $((PORT + 22)))
CL_GRPC=($((PORT + 23)) $((PORT + 24)) $((PORT + 25)))
CL_GOSSIP=($((PORT + 26)) $((PORT + 27)) $((PORT + 28)))
CL_PPROF=$((PORT + 29))
NGX_PLAIN=$((PORT + 30)); NGX_AUTH=$((PORT + 31))
NGX_NODE_HTTP=$((PORT + 32)); NGX_NODE_GRPC=$((PORT + 33)); NGX_NODE_GOSSIP=$((PORT + 34))
for p in $FLOOR_HTTP $PROXY_HTTP $PROXY_GRPC $PROXY_GOSSIP $PROXY_PPROF $REDIS_PORT "${BARE_HTTP[@]}" \
  "${TLAPP_HTTP[@]}" "${RDAPP_HTTP[@]}" "${CL_HTTP[@]}" "${CL_GRPC[@]}" "${CL_GOSSIP[@]}" $CL_PPROF \
  $NGX_PLAIN $NGX_AUTH $NGX_NODE_HTTP $NGX_NODE_GRPC $NGX_NODE_GOSSIP; do
  port_free "$p" || die "port $p is in use: set ANYSTACK_PORT to another base"
done

# Keys: one tiers file with enough fresh keys for every run; each run takes
# its own slice of them (bench/report keys).
LOAD_RUNS=$(( ${#CONCURRENCY[@]} * 7 * TRIES + 4 ))   # 7 stacks, and the 4 profile runs
GEN_KEYS=$(( LOAD_RUNS * LOAD_KEYS + 3 * TRIES * HOT_KEYS + 3 * ACC_KEYS + 1 ))
TIERS=$RUN/tiers.json
"$BIN/loadgen" -config config/tiers.json -gen-config "$TIERS" -gen-keys "$GEN_KEYS" >/dev/null
WINDOW=$(grep -o '"window_seconds": *[0-9]*' "$TIERS" | grep -o '[0-9]*$')
log "tiers file with $GEN_KEYS fresh keys per tier: $TIERS"

# keys NAME SPEC: writes $RUN/keys/NAME.json with the next fresh keys and
# sets KF to its path. (Not in a $(…): a failure must stop the script.)
keys() {
  KF=$RUN/keys/$1.json
  "$BIN/report" keys -config "$TIERS" -state "$RUN/keys/used.json" -take "$2" -out "$KF"
}

urls() { local p out=""; for p in "$@"; do out+="${out:+,}http://127.0.0.1:$p"; done; echo "$out"; }

# ---------------------------------------------------------------- start everything

log "starting the floor, the proxy node, redis-server, a 3-node cluster, 9 uvicorns, nginx twice and its node"
NODE_FLAGS=(-admin-token "$TOKEN" -log-format json)
NODE_ENV=()
# shellcheck disable=SC2206 # split on purpose: lists of flags and of KEY=value words
{ NODE_FLAGS+=(${ANYSTACK_NODE_FLAGS:-}); NODE_ENV=(${ANYSTACK_NODE_ENV:-}); }
EXPERIMENT=
[ -n "${ANYSTACK_NODE_FLAGS:-}${ANYSTACK_NODE_ENV:-}" ] && EXPERIMENT=1
start floor "$BIN/floor" -http-addr "127.0.0.1:$FLOOR_HTTP" -config "$TIERS" -node-name floor
start proxy env "BENCH_PPROF_ADDR=127.0.0.1:$PROXY_PPROF" "${NODE_ENV[@]}" "$NODE" -config "$TIERS" -node-name proxy "${NODE_FLAGS[@]}" \
  -http-addr "127.0.0.1:$PROXY_HTTP" -grpc-addr "127.0.0.1:$PROXY_GRPC" -gossip-addr "127.0.0.1:$PROXY_GOSSIP" \
  -upstream "http://127.0.0.1:$FLOOR_HTTP"
start redis redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
  --daemonize no --protected-mode yes --loglevel warning
for i in 0 1 2; do
  join=()
  [ "$i" -gt 0 ] && join=(-join "127.0.0.1:${CL_GOSSIP[0]}")
  pprof=()
  [ "$i" -eq 0 ] && pprof=("BENCH_PPROF_ADDR=127.0.0.1:$CL_PPROF")
  start "tl-n$((i + 1))" env "${pprof[@]}" "${NODE_ENV[@]}" "$NODE" -config "$TIERS" -node-name "n$((i + 1))" "${NODE_FLAGS[@]}" \
    -http-addr "127.0.0.1:${CL_HTTP[$i]}" -grpc-addr "127.0.0.1:${CL_GRPC[$i]}" -gossip-addr "127.0.0.1:${CL_GOSSIP[$i]}" \
    "${join[@]}"
  # The seed first, so the others find it.
  [ "$i" -eq 0 ] && wait_http tl-n1 "http://127.0.0.1:${CL_HTTP[0]}/readyz"
done

# uvicorn NAME MODULE PORT ENV...: one uvicorn process serving MODULE:app.
uvicorn() {
  local name=$1 module=$2 port=$3; shift 3
  start "$name" env "ANYSTACK_NAME=$name" "$@" "$PY" -m uvicorn --app-dir "$ROOT/bench/fastapi" "$module:app" \
    --host 127.0.0.1 --port "$port" --no-access-log --log-level warning
}
for i in 0 1 2; do
  n=$((i + 1))
  prof_tl=() prof_rd=()
  [ "$i" -eq 0 ] && prof_tl=("ANYSTACK_CPROFILE=$PROF/tierlimit-app.prof") prof_rd=("ANYSTACK_CPROFILE=$PROF/redis-app.prof")
  uvicorn "bare-$n" bare "${BARE_HTTP[$i]}"
  uvicorn "tlapp-$n" with_tierlimit "${TLAPP_HTTP[$i]}" "ANYSTACK_NODE=http://127.0.0.1:${CL_HTTP[$i]}" "${prof_tl[@]}"
  uvicorn "rdapp-$n" with_redis "${RDAPP_HTTP[$i]}" "ANYSTACK_REDIS=redis://127.0.0.1:$REDIS_PORT/0" \
    "ANYSTACK_TIERS=$TIERS" "${prof_rd[@]}"
done

# (c): the node nginx asks, alone and with default flags like the proxy's,
# and nginx twice. nginx_start NAME TEMPLATE PORT fills TEMPLATE as
# docs/forward-auth.md shows and starts nginx on it in the foreground
# (daemon off), its prefix (logs, temporary files, pid file) in
# $RUN/nginx/NAME.
start ngx-node env "${NODE_ENV[@]}" "$NODE" -config "$TIERS" -node-name ngx-node "${NODE_FLAGS[@]}" \
  -http-addr "127.0.0.1:$NGX_NODE_HTTP" -grpc-addr "127.0.0.1:$NGX_NODE_GRPC" -gossip-addr "127.0.0.1:$NGX_NODE_GOSSIP"
nginx_start() {
  local name=$1 tmpl=$2 port=$3 prefix=$RUN/nginx/$1
  mkdir -p "$prefix"
  # shellcheck disable=SC2016 # the names envsubst fills, not expansions
  NODE_ADDR=127.0.0.1:$NGX_NODE_HTTP UPSTREAM_ADDR=127.0.0.1:$FLOOR_HTTP LISTEN_PORT=$port NGINX_PREFIX=$prefix \
    envsubst '${NODE_ADDR} ${UPSTREAM_ADDR} ${LISTEN_PORT} ${NGINX_PREFIX}' <"$tmpl" >"$prefix/nginx.conf"
  "$NGINX" -t -q -p "$prefix" -c "$prefix/nginx.conf" -g "pid $prefix/nginx.pid;" >"$LOGS/$name.log" 2>&1 ||
    { cat "$LOGS/$name.log" >&2; die "nginx rejects $prefix/nginx.conf (from $tmpl)"; }
  start "$name" "$NGINX" -p "$prefix" -c "$prefix/nginx.conf" -g "daemon off; pid $prefix/nginx.pid;"
}
nginx_start ngx-plain bench/nginx/plain.conf "$NGX_PLAIN"
nginx_start ngx-auth examples/nginx/nginx.conf "$NGX_AUTH"

deadline=$((SECONDS + 30))
until [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; do
  alive redis || die "redis-server did not start"
  [ $SECONDS -lt $deadline ] || die "redis-server not answering PING after 30 s"
  sleep 0.1
done
wait_http floor "http://127.0.0.1:$FLOOR_HTTP/readyz"
wait_http proxy "http://127.0.0.1:$PROXY_HTTP/readyz"
for i in 1 2; do wait_http "tl-n$((i + 1))" "http://127.0.0.1:${CL_HTTP[$i]}/readyz"; done
wait_members 3 "http://127.0.0.1:${CL_HTTP[0]}" "http://127.0.0.1:${CL_HTTP[1]}" "http://127.0.0.1:${CL_HTTP[2]}"
wait_http ngx-node "http://127.0.0.1:$NGX_NODE_HTTP/readyz"
wait_http ngx-plain "http://127.0.0.1:$NGX_PLAIN/readyz"
wait_http ngx-auth "http://127.0.0.1:$NGX_AUTH/readyz" any  # 401: no key
for name in ngx-plain ngx-auth; do
  # The master is the process started (daemon off): its pid file says so.
  [ "$(cat "$RUN/nginx/$name/nginx.pid" 2>/dev/null)" = "$(pid_of "$name")" ] ||
    die "$name: $RUN/nginx/$name/nginx.pid does not name the process started ($(pid_of "$name"))"
done
KIDS=()
children ngx-auth "$(pid_of ngx-auth)"
NGX_WORKERS=${#KIDS[@]}
for i in 0 1 2; do
  wait_http "bare-$((i + 1))" "http://127.0.0.1:${BARE_HTTP[$i]}/readyz"
  wait_http "tlapp-$((i + 1))" "http://127.0.0.1:${TLAPP_HTTP[$i]}/readyz" any
  wait_http "rdapp-$((i + 1))" "http://127.0.0.1:${RDAPP_HTTP[$i]}/readyz" any
done
log "all ready"

# Stacks: their ports, and whose CPU counts for them (role=process-name
# glob; loadgen is added to each).
declare -A PORTS=([floor]="$FLOOR_HTTP" [proxy]="$PROXY_HTTP" [bare]="${BARE_HTTP[*]}"
  [tierlimit]="${TLAPP_HTTP[*]}" [redis]="${RDAPP_HTTP[*]}" [redis-boundary]="${RDAPP_HTTP[*]}"
  [nginx]="$NGX_PLAIN" [nginx-auth]="$NGX_AUTH")
declare -A NODEPORTS=([proxy]="$PROXY_HTTP" [tierlimit]="${CL_HTTP[*]}" [nginx-auth]="$NGX_NODE_HTTP")
declare -A ROLES=([floor]="upstream=floor" [proxy]="node=proxy upstream=floor" [bare]="app=bare-*"
  [tierlimit]="app=tlapp-* node=tl-n*" [redis]="app=rdapp-* redis=redis" [redis-boundary]="app=rdapp-* redis=redis"
  [nginx]="nginx=ngx-plain upstream=floor" [nginx-auth]="nginx=ngx-auth node=ngx-node upstream=floor")

# ---------------------------------------------------------------- CPU accounting

HZ=$(getconf CLK_TCK)
NCPU=$(nproc)

# ticks GLOB: CPU ticks (user + system, all threads) used so far by our
# servers whose names match GLOB, an nginx's workers (its children) with it.
ticks() {
  local i sum=0 t pid KIDS=()
  for i in "${!NAMES[@]}"; do
    # shellcheck disable=SC2053 # a glob on purpose
    if [[ ${NAMES[$i]} == $1 ]]; then
      children "${NAMES[$i]}" "${PIDS[$i]}"
      for pid in "${PIDS[$i]}" "${KIDS[@]}"; do
        t=$(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null) || t=0
        sum=$((sum + ${t:-0}))
      done
    fi
  done
  echo "$sum"
}


# child_secs sets CHILD to the CPU seconds this shell's reaped children
# used. (Not in a $(…) or a pipe: `times` must run in this shell.)
child_secs() {
  times >"$RUN/times"
  CHILD=$(tail -n 1 "$RUN/times" | awk '{ s = 0
    for (i = 1; i <= 2; i++) { split($i, a, "m"); sub("s", "", a[2]); s += a[1] * 60 + a[2] }
    printf "%.2f", s }')
}

# Busy seconds of the whole machine, and ours (servers and reaped
# children), to tell how much of it other programs took during a run (this
# is a shared machine).
cpu_busy() { awk '/^cpu / { printf "%.2f", ($2 + $3 + $4 + $7 + $8 + $9) / 100 }' /proc/stat; }
cpu_ours() {
  child_secs
  OURS=$(awk -v t="$(ticks '*')" -v c="$CHILD" -v hz="$HZ" 'BEGIN { printf "%.2f", t / hz + c }')
}
# others_pct BUSY0 OURS0 T0: sets OTHERS to the percent of the machine's
# CPUs that other programs used since the three readings were taken.
others_pct() {
  local busy
  busy=$(cpu_busy); cpu_ours
  OTHERS=$(awk -v b0="$1" -v o0="$2" -v t0="$3" -v b1="$busy" -v o1="$OURS" -v t1="$EPOCHREALTIME" -v n="$NCPU" \
    'BEGIN { x = ((b1 - b0) - (o1 - o0)) / ((t1 - t0) * n) * 100; if (x < 0) x = 0; printf "%.0f", x }')
}

# wait_quiet: waits, at most QUIET_WAIT seconds and within what is left of
# QUIET_BUDGET, until other programs use less than 10% of the machine over
# 2 s.
WAITED=0
wait_quiet() {
  local limit=$((QUIET_BUDGET - WAITED))
  [ "$limit" -gt "$QUIET_WAIT" ] && limit=$QUIET_WAIT
  [ "$limit" -gt 0 ] || return 0
  local t0=$SECONDS b o t said=
  while :; do
    b=$(cpu_busy); cpu_ours; o=$OURS; t=$EPOCHREALTIME
    sleep 2
    others_pct "$b" "$o" "$t"
    [ "$OTHERS" -lt 10 ] && break
    [ $((SECONDS - t0)) -lt "$limit" ] || { log "machine still busy (others: $OTHERS%): measuring anyway"; break; }
    [ -n "$said" ] || log "other programs use $OTHERS% of the machine: waiting up to $limit s"
    said=1
  done
  [ -n "$said" ] && [ "$OTHERS" -lt 10 ] && log "machine quiet again"
  WAITED=$((WAITED + SECONDS - t0))
}

# decisions PORT...: the decisions the nodes on PORTs made so far, summed
# by the path that decided them (tierlimit_decision_duration_seconds):
# "path count seconds" lines.
decisions() {
  local p
  for p in "$@"; do curl -fsS --max-time 2 "http://127.0.0.1:$p/metrics" 2>/dev/null || true; done |
    awk '/^tierlimit_decision_duration_seconds_(count|sum)\{/ {
        match($0, /path="[^"]*"/); path = substr($0, RSTART + 6, RLENGTH - 7)
        if ($1 ~ /_count\{/) n[path] += $NF; else s[path] += $NF
      }
      END { for (p in n) print p, n[p], s[p] + 0 }'
}

# decisions_delta BEFORE AFTER: the decisions between two readings of
# decisions, as path=count:seconds, comma-separated (paths that decided
# nothing left out), or "-".
decisions_delta() {
  awk -v before="$1" -v after="$2" 'BEGIN {
    nb = split(before, b, "\n"); for (i = 1; i <= nb; i++) { split(b[i], f, " "); if (f[1] != "") { n0[f[1]] = f[2]; s0[f[1]] = f[3] } }
    na = split(after, a, "\n"); out = ""
    for (i = 1; i <= na; i++) {
      split(a[i], f, " ")
      if (f[1] == "" || f[2] - n0[f[1]] <= 0) continue
      out = out (out == "" ? "" : ",") sprintf("%s=%d:%.6f", f[1], f[2] - n0[f[1]], f[3] - s0[f[1]])
    }
    print (out == "" ? "-" : out)
  }'
}

# ---------------------------------------------------------------- measuring

RUNS=$RUN/runs.tsv
UPLOADS=$RUN/upload.tsv
: >"$RUNS"
: >"$UPLOADS"

# measure STACK OUT LOADGEN-ARGS...: runs loadgen with the keys in KF,
# writing its report to OUT; sets CPU (role=seconds,… of STACK's processes
# and of loadgen), OTHERS (the share of the machine other programs took
# meanwhile) and PATHS (how STACK's nodes decided, or "-").
measure() {
  local stack=$1 out=$2; shift 2
  local specs spec b o t c0 cpu="" nodes=() d0=""
  local -A before=()
  read -ra specs <<<"${ROLES[$stack]}"
  read -ra nodes <<<"${NODEPORTS[$stack]:-}"
  for spec in "${specs[@]}"; do before[${spec%%=*}]=$(ticks "${spec#*=}"); done
  [ ${#nodes[@]} -gt 0 ] && d0=$(decisions "${nodes[@]}")
  b=$(cpu_busy); cpu_ours; o=$OURS; t=$EPOCHREALTIME; c0=$CHILD
  echo "== $(basename "$out")" >>"$LOGS/loadgen.log"
  "$BIN/loadgen" -config "$TIERS" -keys-file "$KF" -quiet -json "$@" >"$out" 2>>"$LOGS/loadgen.log" ||
    log "loadgen exited $? (report kept; see $LOGS/loadgen.log)"
  others_pct "$b" "$o" "$t"
  PATHS=-
  [ ${#nodes[@]} -gt 0 ] && PATHS=$(decisions_delta "$d0" "$(decisions "${nodes[@]}")")
  for spec in "${specs[@]}"; do
    cpu+="${cpu:+,}${spec%%=*}=$(awk -v a="${before[${spec%%=*}]}" -v b="$(ticks "${spec#*=}")" -v hz="$HZ" \
      'BEGIN { printf "%.2f", (b - a) / hz }')"
  done
  CPU="$cpu,loadgen=$(awk -v a="$c0" -v b="$CHILD" 'BEGIN { printf "%.2f", b - a }')"
  [ -s "$out" ] || die "no report from loadgen in $out"
}

# rps FILE: the throughput in a loadgen report.
rps() { grep -o '"requests_per_second":[0-9]*' "$1" | head -n 1 | cut -d: -f2; }

# loadrun STACK C [hot]: the measured run, with fresh enterprise keys
# (LOAD_KEYS of them, or HOT_KEYS with hot), after a warm-up with the same
# keys (the steady state of keys hit again and again). A full run first
# waits for a quieter machine, redoes a try during which others took more
# than MAX_OTHERS%, and keeps the cleanest try.
loadrun() {
  local stack=$1 c=$2 kind=load n=$LOAD_KEYS name targets try out best="" line
  [ "${3:-}" = hot ] && { kind=hot; n=$HOT_KEYS; }
  name=$stack-c$c
  [ "$kind" = hot ] && name=$stack-hot-c$c
  # shellcheck disable=SC2086 # split on purpose: a list of ports
  targets=$(urls ${PORTS[$stack]})
  for try in $(seq "$TRIES"); do
    wait_quiet
    keys "$name-try$try" "enterprise=$n"
    echo "== $name-try$try warm-up" >>"$LOGS/loadgen.log"
    "$BIN/loadgen" -config "$TIERS" -keys-file "$KF" -mix enterprise=100 \
      -targets "$targets" -c "$c" -d "${WARM}s" -quiet -json >/dev/null 2>>"$LOGS/loadgen.log" || true
    out=$RUN/results/$name-try$try.json
    measure "$stack" "$out" -mix enterprise=100 -targets "$targets" -c "$c" -d "${DUR}s"
    log "$stack c=$c, $n keys: $(rps "$out") req/s, CPU $CPU, decisions $PATHS, other programs $OTHERS% of the machine"
    line="$kind"$'\t'"$stack"$'\t'"$c"$'\t'"$out"$'\t'"$CPU"$'\t'"$OTHERS"$'\t'"$PATHS"
    if [ -z "$best" ] || [ "$OTHERS" -lt "${best%%$'\t'*}" ]; then best="$OTHERS"$'\t'"$line"; fi
    [ "$OTHERS" -le "$MAX_OTHERS" ] && break
    [ "$try" -lt "$TRIES" ] && log "$stack c=$c, $n keys: redoing (others above $MAX_OTHERS%)"
  done
  printf '%s\n' "${best#*$'\t'}" >>"$RUNS"
}

# window_pos: seconds into the current fixed window (of the Redis stack).
window_pos() { awk -v t="$EPOCHREALTIME" -v w="$WINDOW" 'BEGIN { printf "%.3f", t - int(t / w) * w }'; }

# sleep_until_pos P: sleeps until P seconds into a window (this one's, or
# the next's if P has passed): less than one window.
sleep_until_pos() {
  local d
  d=$(awk -v p="$(window_pos)" -v want="$1" -v w="$WINDOW" 'BEGIN { d = want - p; if (d < 0) d += w; printf "%.3f", d }')
  log "waiting $d s for $1 s into the Redis stack's fixed window"
  sleep "$d"
}

# accrun STACK: fresh keys of every tier, each sent well over its limit at
# c=64. The Redis stack's run is timed to stay inside one fixed window; its
# redis-boundary run to cross a window's end.
accrun() {
  local stack=$1 targets out n=$ACC_N d=$ACC_MAX
  # shellcheck disable=SC2086 # split on purpose: a list of ports
  targets=$(urls ${PORTS[$stack]})
  out=$RUN/results/$stack-accuracy.json
  wait_quiet
  keys "acc-$stack" "free=$ACC_KEYS,pro=$ACC_KEYS,enterprise=$ACC_KEYS"
  case $stack in
    redis)
      if awk -v p="$(window_pos)" -v d="$ACC_MAX" -v w="$WINDOW" 'BEGIN { exit !(p < 0.5 || p + d > w - 1) }'; then
        sleep_until_pos 0.5
      fi ;;
    redis-boundary)
      sleep_until_pos $((WINDOW - EDGE_LEAD)); n=100000000; d=$EDGE_DUR ;;
  esac
  measure "$stack" "$out" -accuracy-keys "$ACC_KEYS" -mix "$ACC_MIX" -n "$n" -d "${d}s" -targets "$targets" -c 64
  printf 'accuracy\t%s\t64\t%s\t%s\t%s\t%s\n' "$stack" "$out" "$CPU" "$OTHERS" "$PATHS" >>"$RUNS"
  log "$stack accuracy: $(rps "$out") req/s, other programs $OTHERS% of the machine"
}

# vm FIELD PID: a field of /proc/PID/status, in kB.
vm() { awk -v f="$1:" '$1 == f { print $2 }' "/proc/$2/status"; }

# uploads: the 200 MB POST, direct and through the proxy, UPLOAD_RUNS times
# each, alternating; for the proxy, the node's VmRSS before and its peak
# (VmHWM, reset just before) after.
uploads() {
  local file=$RUN/upload.bin pid key run res reset before peak
  head -c $((UPLOAD_MB << 20)) /dev/zero >"$file"
  pid=$(pid_of proxy)
  keys upload enterprise=1
  key=$(grep -o '"lg-enterprise-[^"]*"' "$KF" | head -n 1 | tr -d '"')
  [ -n "$key" ] || die "no enterprise key in $KF"
  # post URL: the upload with curl from the file, streamed (no
  # Expect: 100-continue round trip); prints status, seconds, bytes sent.
  post() {
    curl -sS --max-time 120 -o /dev/null -w '%{http_code}\t%{time_total}\t%{size_upload}' -X POST \
      -H 'Expect:' -H 'Content-Type: application/octet-stream' -H "X-API-Key: $key" -T "$file" "$1"
  }
  for run in $(seq "$UPLOAD_RUNS"); do
    wait_quiet
    res=$(post "http://127.0.0.1:$FLOOR_HTTP/upload") || die "direct upload failed"
    printf 'direct\t%s\t%s\t%s\t-\t-\tno\n' "$(cut -f2 <<<"$res")" "$(cut -f3 <<<"$res")" "$(cut -f1 <<<"$res")" >>"$UPLOADS"
    reset=no
    { echo 5 >"/proc/$pid/clear_refs"; } 2>/dev/null && reset=yes
    before=$(vm VmRSS "$pid")
    res=$(post "http://127.0.0.1:$PROXY_HTTP/upload") || die "upload through the proxy failed"
    peak=$(vm VmHWM "$pid")
    printf 'proxy\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(cut -f2 <<<"$res")" "$(cut -f3 <<<"$res")" "$(cut -f1 <<<"$res")" \
      "$before" "$peak" "$reset" >>"$UPLOADS"
    log "upload $run: direct $(tail -n 2 "$UPLOADS" | head -n 1 | cut -f2) s, proxy $(cut -f2 <<<"$res") s; node RSS ${before} kB before, peak ${peak} kB (reset: $reset)"
  done
  rm -f "$file"
}

# goprof NAME PPROF-PORT: fetches a PROF_SECS CPU profile of the node
# serving pprof on PPROF-PORT into $PROF/NAME.pb.gz, in the background
# (sets BG).
goprof() {
  curl -fsS --max-time $((PROF_SECS + 30)) -o "$PROF/$1.pb.gz" \
    "http://127.0.0.1:$2/debug/pprof/profile?seconds=$PROF_SECS" 2>>"$LOGS/pprof.log" &
  BG=$!
  AUX+=("$BG")
}

# gotop NAME: the profile's top entries: by self time, by cumulative
# time, and by cumulative time among the functions of this module, net/http
# and gRPC (what the node does per request).
gotop() {
  local f=$PROF/$1.pb.gz
  {
    go tool pprof -top -nodecount=12 "$NODE" "$f" 2>/dev/null
    echo
    go tool pprof -top -cum -nodecount=10 "$NODE" "$f" 2>/dev/null | sed -n '/flat%/,$p'
    echo
    echo "functions of tierlimit, net/http and grpc only:"
    go tool pprof -top -cum -nodecount=15 -show='github.com/tierlimit|net/http|google.golang.org/grpc' "$NODE" "$f" 2>/dev/null |
      sed -n '/flat%/,$p'
  } | sed 's/\[go\.shape\..*\]\.\([A-Za-z]\)/[…].\1/; s/\[go\.shape\..*\])/[…])/' >"$PROF/$1.txt"
}

# nodeprof NAME PPROF-PORT STACK: a Go CPU profile of the node serving
# pprof on PPROF-PORT under c=1 load on STACK, after a warm-up.
nodeprof() {
  local name=$1 port=$2 stack=$3 targets lg
  # shellcheck disable=SC2086 # split on purpose: a list of ports
  targets=$(urls ${PORTS[$stack]})
  keys "prof-$name" "enterprise=$LOAD_KEYS"
  echo "== $name warm-up" >>"$LOGS/loadgen.log"
  "$BIN/loadgen" -config "$TIERS" -keys-file "$KF" -mix enterprise=100 \
    -targets "$targets" -c 1 -d "${WARM}s" -quiet -json >/dev/null 2>>"$LOGS/loadgen.log" || true
  echo "== $name" >>"$LOGS/loadgen.log"
  "$BIN/loadgen" -config "$TIERS" -keys-file "$KF" -mix enterprise=100 -targets "$targets" \
    -c 1 -d "$((PROF_SECS + 1))s" -quiet -json >"$PROF/$name.load.json" 2>>"$LOGS/loadgen.log" &
  lg=$!
  AUX+=("$lg")
  goprof "$name" "$port"
  wait "$BG" || log "no Go profile $name (see $LOGS/pprof.log)"
  wait "$lg" || true
  [ -s "$PROF/$name.pb.gz" ] && gotop "$name"
  log "profiled $name under c=1 ($(rps "$PROF/$name.load.json") req/s): $PROF/$name.txt"
}

# pyprof STACK APP [yes]: a cProfile of uvicorn APP, into
# $PROF/STACK-app.prof (where APP's ANYSTACK_CPROFILE points), under c=64
# load on STACK for PROF_SECS; with yes, also a Go profile of node n1.
pyprof() {
  local stack=$1 app=$2 nodeprof=$3 name=$1-app targets pid focus
  # The functions that show the limiter's share: the middleware, its check,
  # and the app behind it.
  case $stack in
    tierlimit) focus=tierlimit/middleware.py:__call__,tierlimit/middleware.py:_ask,tierlimit/_node.py:authorize ;;
    redis) focus=fastapi/redislimit.py:__call__,redis/asyncio/client.py:execute ;;
  esac
  focus+=,starlette/routing.py:handle,uvicorn/protocols/http/h11_impl.py:run_asgi
  # shellcheck disable=SC2086 # split on purpose: a list of ports
  targets=$(urls ${PORTS[$stack]})
  pid=$(pid_of "$app")
  keys "prof-$stack" "enterprise=$LOAD_KEYS"
  echo "== $name warm-up" >>"$LOGS/loadgen.log"
  "$BIN/loadgen" -config "$TIERS" -keys-file "$KF" -mix enterprise=100 \
    -targets "$targets" -c 64 -d "${WARM}s" -quiet -json >/dev/null 2>>"$LOGS/loadgen.log" || true
  echo "== $name" >>"$LOGS/loadgen.log"
  kill -USR1 "$pid"
  [ -n "$nodeprof" ] && goprof tierlimit-node "$CL_PPROF"
  "$BIN/loadgen" -config "$TIERS" -keys-file "$KF" -mix enterprise=100 \
    -targets "$targets" -c 64 -d "${PROF_SECS}s" -quiet -json >"$PROF/$name.load.json" 2>>"$LOGS/loadgen.log" || true
  kill -USR2 "$pid"
  [ -n "$nodeprof" ] && { wait "$BG" || log "no Go profile of $stack's node n1 (see $LOGS/pprof.log)"; }
  wait_file "$PROF/$name.prof"
  "$PY" bench/fastapi/pstats_top.py "$PROF/$name.prof" 15 --focus "$focus" >"$PROF/$name.txt"
  [ -n "$nodeprof" ] && [ -s "$PROF/tierlimit-node.pb.gz" ] && gotop tierlimit-node
  log "profiled $app under c=64 ($(rps "$PROF/$name.load.json") req/s, $(missing "$PROF/$name.load.json") responses without rate-limit headers): $PROF/$name.txt"
}

# missing FILE: the responses without X-RateLimit-Limit in a loadgen report.
missing() { grep -o '"missing_limit_header":[0-9]*' "$1" | cut -d: -f2; }

# What the servers use with no load at all (gossip, backups, timers), so
# that their CPU under load can be read against it.
idle() {
  local secs=$1 g t0 t1 out=""
  local -A start=()
  local groups=('tl-n*' proxy redis 'bare-*' 'tlapp-*' 'rdapp-*' ngx-node 'ngx-[pa]*')
  for g in "${groups[@]}"; do start[$g]=$(ticks "$g"); done
  sleep "$secs"
  for g in "${groups[@]}"; do
    t0=${start[$g]}; t1=$(ticks "$g")
    out+="${out:+, }$(awk -v a="$t0" -v b="$t1" -v hz="$HZ" -v s="$secs" -v g="$g" 'BEGIN {
      name["tl-n*"] = "the 3 cluster nodes"; name["proxy"] = "the proxy node"; name["redis"] = "redis-server"
      name["bare-*"] = "3 bare uvicorns"; name["tlapp-*"] = "3 tierlimit uvicorns"; name["rdapp-*"] = "3 Redis uvicorns"
      name["ngx-node"] = "the node nginx asks"; name["ngx-[pa]*"] = "the two nginx (masters and workers)"
      printf "%s %.1f ms/s", name[g], (b - a) / hz * 1000 / s }')"
  done
  IDLE=$out
}
idle $((WARM * 2))
log "idle CPU: $IDLE"

LOAD_AVG_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

log "(a) the proxy"
for c in "${CONCURRENCY[@]}"; do
  for stack in floor proxy; do loadrun "$stack" "$c"; done
done
uploads

log "(c) nginx forward auth"
for c in "${CONCURRENCY[@]}"; do
  for stack in nginx nginx-auth; do loadrun "$stack" "$c"; done
done

log "(b) FastAPI three ways"
for c in "${CONCURRENCY[@]}"; do
  for stack in bare tierlimit redis; do loadrun "$stack" "$c"; done
done
log "(b) FastAPI three ways, $HOT_KEYS hot keys"
for stack in bare tierlimit redis; do loadrun "$stack" 1 hot; done
accrun tierlimit
accrun redis
[ "$MODE" = full ] && accrun redis-boundary

log "profiles"
nodeprof proxy-node "$PROXY_PPROF" proxy
nodeprof tierlimit-node-c1 "$CL_PPROF" tierlimit
pyprof tierlimit tlapp-1 yes
pyprof redis rdapp-1 ""

LOAD_AVG_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- report

cpu=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2 | sed 's/^ *//' || true)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -z "$(git status --porcelain -- . ':(exclude)*.md' ':(exclude)bench/out' 2>/dev/null)" ] ||
  commit+=" + uncommitted changes (the tree is dirty)"
pyver=$("$PY" - <<'PYEOF'
import importlib.util as u
import sys

import fastapi
import redis
import starlette
import uvicorn

loop = "uvloop" if u.find_spec("uvloop") else "asyncio"
http = "httptools" if u.find_spec("httptools") else "h11"
parser = "hiredis" if u.find_spec("hiredis") else "pure-Python parser"
print(f"Python {sys.version.split()[0]}, FastAPI {fastapi.__version__} (Starlette {starlette.__version__}), "
      f"uvicorn {uvicorn.__version__} (loop {loop}, http {http}), redis-py {redis.__version__} ({parser})")
PYEOF
)
command=bench/anystack.sh
[ "$MODE" = quick ] && command+=" --quick"
{
  echo "command=\`$command\`"
  echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "code=$commit"
  echo "machine=$NCPU CPUs${cpu:+ ($cpu)}, $(uname -sr); everything, loadgen included, on these CPUs and loopback"
  echo "go=$(go env GOVERSION)"
  echo "python=$pyver"
  echo "redis-server=$(redis-server --version | grep -o 'v=[0-9.]*' | cut -d= -f2)"
  echo "load runs=${DUR} s each after a ${WARM} s warm-up with the same keys, fresh for each run: $LOAD_KEYS enterprise keys (L = 1500/min: the limit never binds); at c=1 and c=64; and, at c=1, $HOT_KEYS hot keys (each node leases those it does not own)"
  echo "loadgen=\`loadgen -config tiers.json -keys-file <fresh keys> -mix enterprise=100 -targets <URLs> -c <C> -d ${DUR}s -quiet -json\`"
  echo "accuracy runs=\`loadgen -accuracy-keys $ACC_KEYS -mix $ACC_MIX -n $ACC_N -d ${ACC_MAX}s -c 64\`, fresh keys; the Redis stack's run timed inside one fixed window$([ "$MODE" = full ] && echo ", and one from $EDGE_LEAD s before a window's end for $EDGE_DUR s")"
  echo "uvicorn=\`/usr/bin/python3 -m uvicorn --app-dir bench/fastapi <module>:app --host 127.0.0.1 --port <P> --no-access-log --log-level warning\`, 3 per stack"
  extra="${NODE_FLAGS[*]:4}"
  echo "cmd/node=default flags but \`-admin-token -log-format json${extra:+ $extra}\`${NODE_ENV[*]:+, environment \`${NODE_ENV[*]}\`}; built with bench/pprof.go.in overlaid (pprof on its own port, only for the proxy and n1)"
  echo "nginx=$("$NGINX" -v 2>&1 | sed 's/^nginx version: //'), \`worker_processes auto\` ($NGX_WORKERS workers each): examples/nginx/nginx.conf as shipped, and bench/nginx/plain.conf, filled by envsubst and started \`nginx -p <prefix> -c <file> -g 'daemon off; pid <file>;'\`; the node it asks alone, default flags like the proxy's"
  echo "TierLimitMiddleware=defaults (timeout 0.1 s, fail open, at most 64 connections to the node)"
  echo "Redis middleware=bench/fastapi/redislimit.py: one BlockingConnectionPool of at most 64 per process, timeout 0.1 s, fail open"
  echo "idle CPU=$IDLE (over $((WARM * 2)) s with no load, before the runs)"
  echo "load average (1/5/15 min)=$LOAD_AVG_BEFORE before, $LOAD_AVG_AFTER after"
  echo "quiet wait=$QUIET_WAIT s at most before each run, $WAITED s in all (budget $QUIET_BUDGET s); a run redone once if others took more than $MAX_OTHERS%"
  echo "took=$(( (SECONDS - STARTED) / 60 )) min $(( (SECONDS - STARTED) % 60 )) s"
} >"$RUN/meta.txt"

# The report writer also runs the smoke checks: it exits 1, naming the
# runs, if one failed, after writing results.md but not the doc.
args=(-runs "$RUNS" -upload "$UPLOADS" -meta "$RUN/meta.txt" -profiles "$PROF" -out "$RUN/results.md")
rc=0
if [ "$MODE" = full ] && [ -z "$EXPERIMENT" ]; then
  "$BIN/anystack" "${args[@]}" -doc docs/anystack.md || rc=$?
  [ $rc -eq 0 ] && log "wrote the results section of docs/anystack.md"
else
  "$BIN/anystack" "${args[@]}" || rc=$?
  [ $rc -eq 0 ] && log "$MODE mode${EXPERIMENT:+ with ANYSTACK_NODE_FLAGS or ANYSTACK_NODE_ENV}: wrote $RUN/results.md only"
fi
[ -s "$RUN/results.md" ] && cat "$RUN/results.md"
[ $rc -eq 0 ] || die "smoke checks failed, or the report could not be written (above); docs/anystack.md left alone; results in $RUN/results.md"
