#!/usr/bin/env bash
# run.sh: three instances of a FastAPI speech-to-text stand-in (app.py, under
# uvicorn), each with its own tierlimit node beside it on loopback, the three
# nodes one cluster; then it shows, and checks, that
#
#   1. a free key sent round-robin over the three apps gets 20 × 200, then 429
#      (one count for the key, whichever instance serves it);
#   2. DEGRADED, set through one node's admin API, holds a free key to 2 at
#      every instance while a pro key still passes (its DEGRADED limit is 100);
#   3. NORMAL again gives the free key its burst of 20 back.
#
#   examples/fastapi/run.sh          # 10-30 s; exits 0 only if every answer matched
#
# It uses the shipped config/tiers.json: free-demo-1, free-demo-2 and
# pro-demo-1 start at zero, since the nodes are new. It stops everything it
# started, by PID, on exit, even when interrupted.
#
# Environment:
#   PORT_BASE   ports used (default 24100): nodes' HTTP PORT_BASE+1..3, gRPC
#               +11..13, gossip +21..23; the apps +31..33
#   NODE_BIN    a built cmd/node; default: go build into a temporary directory
#   NODE_FLAGS  more flags for every node (default none)
#
# Needs curl, go (unless NODE_BIN is set), and /usr/bin/python3 with Debian's
# python3-fastapi and python3-uvicorn; the tierlimit package comes from
# python/ in this repository (PYTHONPATH), nothing is installed.
set -euo pipefail
cd "$(dirname "$0")/../.."

PY=/usr/bin/python3
PORT_BASE=${PORT_BASE:-24100}
ADMIN_TOKEN=run-sh-admin-token
read -ra NODE_FLAGS <<<"${NODE_FLAGS:-}"
TMP=$(mktemp -d)
PIDS=()
failed=0

cleanup() {
	local pid i
	for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${PIDS[@]}"; do
		for ((i = 0; i < 100; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

die() {
	echo "run.sh: $*" >&2
	exit 1
}
say() { printf '\n== %s\n' "$*"; }
checks=0
# check WHAT GOT WANT: count a check; say so only if it failed.
check() {
	checks=$((checks + 1))
	if [[ "$2" != "$3" ]]; then
		printf '   MISMATCH  %s: got %s, want %s\n' "$1" "$2" "$3" >&2
		failed=$((failed + 1))
	fi
}

command -v curl >/dev/null || die "curl is required"
[[ -x "$PY" ]] || die "$PY is required (Debian's, with python3-fastapi and python3-uvicorn)"
"$PY" -c 'import fastapi, uvicorn' 2>/dev/null || die "$PY lacks fastapi or uvicorn: apt-get install python3-fastapi python3-uvicorn"

node_http() { echo $((PORT_BASE + $1)); }
app_port() { echo $((PORT_BASE + 30 + $1)); }

# wait_until WHAT PID LOG CMD...: run CMD every 50 ms until it succeeds, for
# at most 20 s; fail at once if process PID has exited.
wait_until() {
	local what=$1 pid=$2 log=$3 deadline=$((SECONDS + 20))
	shift 3
	until "$@" >/dev/null 2>&1; do
		kill -0 "$pid" 2>/dev/null || die "$what: the process exited; its log:"$'\n'"$(cat "$log")"
		((SECONDS < deadline)) || die "$what: not within 20 s; log:"$'\n'"$(cat "$log")"
		sleep 0.05
	done
}

NODE=${NODE_BIN:-}
if [[ -z "$NODE" ]]; then
	command -v go >/dev/null || die "go is required to build cmd/node (or set NODE_BIN)"
	say "go build ./cmd/node"
	NODE=$TMP/node
	timeout 300 go build -o "$NODE" ./cmd/node
fi

say "three nodes, one cluster, on 127.0.0.1:$(node_http 1)-$(node_http 3)"
for i in 1 2 3; do
	join=()
	((i == 1)) || join=(-join "127.0.0.1:$((PORT_BASE + 21))")
	"$NODE" -config config/tiers.json -node-name "node$i" -admin-token "$ADMIN_TOKEN" \
		-http-addr "127.0.0.1:$(node_http "$i")" -grpc-addr "127.0.0.1:$((PORT_BASE + 10 + i))" \
		-gossip-addr "127.0.0.1:$((PORT_BASE + 20 + i))" -log-format json \
		"${join[@]}" "${NODE_FLAGS[@]}" >"$TMP/node$i.log" 2>&1 &
	PIDS+=($!)
	NODE_PID[i]=$!
	wait_until "node$i started" "$!" "$TMP/node$i.log" grep -q '"msg":"node started"' "$TMP/node$i.log"
done
alive3() { [[ $(curl -fsS -m 2 -H "Authorization: Bearer $ADMIN_TOKEN" "127.0.0.1:$(node_http "$1")/system/cluster" | grep -o '"state":"alive"' | wc -l) == 3 ]]; }
for i in 1 2 3; do
	wait_until "node$i ready" "${NODE_PID[i]}" "$TMP/node$i.log" curl -fsS -m 2 "127.0.0.1:$(node_http "$i")/readyz"
	wait_until "node$i sees 3 alive members" "${NODE_PID[i]}" "$TMP/node$i.log" alive3 "$i"
	echo "   node$i: ready, 3 members alive"
done

say "three apps (uvicorn app:app), each beside its node, on 127.0.0.1:$(app_port 1)-$(app_port 3)"
for i in 1 2 3; do
	TIERLIMIT_NODE="http://127.0.0.1:$(node_http "$i")" INSTANCE="app$i" PYTHONPATH="$PWD/python" \
		"$PY" -m uvicorn --app-dir examples/fastapi app:app --host 127.0.0.1 --port "$(app_port "$i")" \
		--no-access-log >"$TMP/app$i.log" 2>&1 &
	PIDS+=($!)
	wait_until "app$i up" "$!" "$TMP/app$i.log" curl -fsS -m 2 "127.0.0.1:$(app_port "$i")/healthz"
	echo "   app$i: up, asking node$i"
done

head -c 32000 /dev/urandom >"$TMP/clip.wav"

# transcribe KEY APP: POST the clip to app APP (1-3) with KEY; sets CODE and
# the header values LIMIT, REMAINING, RETRY, and BODY.
transcribe() {
	CODE=$(curl -sS -m 5 -o "$TMP/body" -D "$TMP/headers" -w '%{http_code}' -X POST \
		-H "X-API-Key: $1" -H 'Content-Type: audio/wav' --data-binary @"$TMP/clip.wav" \
		"http://127.0.0.1:$(app_port "$2")/v1/transcribe") || CODE=000
	LIMIT=$(header x-ratelimit-limit)
	REMAINING=$(header x-ratelimit-remaining)
	RETRY=$(header retry-after)
	BODY=$(cat "$TMP/body")
	printf '   app%s %-12s %s  limit=%-4s remaining=%-4s%s  %s\n' "$2" "$1" "$CODE" "${LIMIT:--}" "${REMAINING:--}" \
		"${RETRY:+ retry-after=$RETRY}" "$BODY"
}
header() { tr -d '\r' <"$TMP/headers" | awk -F': ' -v n="$1" 'tolower($1) == n { print $2 }'; }

# admitted KEY APP LIMIT: one request, checked to be the app's answer, with
# the node's headers. X-Ratelimit-Remaining is not checked to the unit: a
# node holding a lease on a key (hits its owner granted it, cmd/node's
# default -lease-ttl) answers from the lease, so each node's Remaining is
# its own view; which requests get 200 is exact all the same.
admitted() {
	transcribe "$1" "$2"
	check "$1 at app$2" "$CODE limit=$LIMIT" "200 limit=$3"
	((REMAINING >= 0 && REMAINING < $3)) 2>/dev/null || check "X-Ratelimit-Remaining" "'$REMAINING'" "0 to $(($3 - 1))"
	check "app$2's body" "$(grep -o '"bytes":[0-9]*,"instance":"[a-z0-9]*"' <<<"$BODY")" "\"bytes\":32000,\"instance\":\"app$2\""
}
# refused KEY APP LIMIT: one request, checked to be the node's 429.
refused() {
	transcribe "$1" "$2"
	check "$1 at app$2" "$CODE limit=$LIMIT remaining=$REMAINING" "429 limit=$3 remaining=0"
	[[ "$RETRY" =~ ^[1-9][0-9]*$ ]] || check "Retry-After" "'$RETRY'" "a positive number of seconds"
	check "429 body" "$(grep -o '"code":"[a-z_]*"' <<<"$BODY")" '"code":"rate_limited"'
}

# health_all STATUS: every node reports STATUS (within 5 s).
health_all() {
	local i deadline=$((SECONDS + 5))
	for i in 1 2 3; do
		until curl -fsS -m 2 -H "Authorization: Bearer $ADMIN_TOKEN" "127.0.0.1:$(node_http "$i")/system/health" |
			grep -q "\"status\":\"$1\""; do
			((SECONDS < deadline)) || die "node$i is not $1 after 5 s"
			sleep 0.02
		done
	done
	echo "   every node reports $1"
}
set_health() {
	curl -fsS -m 5 -X POST -H "Authorization: Bearer $ADMIN_TOKEN" -H 'Content-Type: application/json' \
		-d "{\"status\":\"$1\"}" "127.0.0.1:$(node_http "$2")/system/health" >/dev/null
	echo "   POST /system/health {\"status\":\"$1\"} to node$2"
	health_all "$1"
}

say "1. free-demo-1, round-robin over the three apps: 20 × 200, then 429"
for ((n = 0; n < 20; n++)); do
	admitted free-demo-1 $((n % 3 + 1)) 20
done
for app in 3 1 2; do
	refused free-demo-1 "$app" 20
done

say "2. DEGRADED through node2's admin API: free-demo-2 held to 2, pro-demo-1 still passes"
set_health DEGRADED 2
admitted free-demo-2 1 2
admitted free-demo-2 2 2
for app in 3 1 2; do
	refused free-demo-2 "$app" 2
done
for ((n = 0; n < 6; n++)); do
	admitted pro-demo-1 $((n % 3 + 1)) 100
done

say "3. NORMAL through node3: free-demo-2 has its burst of 20 again"
set_health NORMAL 3
admitted free-demo-2 3 20

echo
if ((failed)); then
	echo "run.sh: $failed of $checks checks failed" >&2
	exit 1
fi
echo "run.sh: all $checks checks passed"
