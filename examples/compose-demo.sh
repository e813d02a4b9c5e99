#!/usr/bin/env bash
# compose-demo.sh: the README's compose walkthrough, run and checked. It
# starts its own compose project (tldemo<pid>) from docker-compose.yml,
# runs each step as the README shows it, compares every answer with what the
# README promises, and removes the project on exit. CI runs it.
#
#   make image && examples/compose-demo.sh      # about a minute; exit 0 only if every answer matched
#
# Needs the tierlimit:dev image (make image, or docker compose build on a
# machine that can pull a Go image), curl and jq; host ports 18080-18089.
set -euo pipefail
cd "$(dirname "$0")/.."

if docker compose version >/dev/null 2>&1; then
	DC=(docker compose)
else
	DC=(docker-compose)
fi
export COMPOSE_PROJECT_NAME=tldemo$$
export ADMIN_TOKEN=demo-admin-token
CLUSTER_KEY=$(head -c 32 /dev/urandom | base64)
export CLUSTER_KEY
AUTH=(-H "Authorization: Bearer $ADMIN_TOKEN")
failed=0

cleanup() { "${DC[@]}" down -v --remove-orphans >/dev/null 2>&1 || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '\n== %s\n' "$*"; }
# expect WHAT GOT WANT
expect() {
	if [[ "$2" == "$3" ]]; then
		echo "ok: $1: $2"
	else
		echo "MISMATCH: $1: got '$2', want '$3'" >&2
		failed=1
	fi
}
# ports: the replicas' host ports, in the array P.
ports() { read -ra P <<<"$(examples/ports.sh -q)"; }
# alive N: wait up to 20 s until the first replica lists N alive members.
alive() {
	local n deadline=$((SECONDS + 20))
	while ((SECONDS < deadline)); do
		ports
		n=$(curl -fsS -m 2 "${AUTH[@]}" "localhost:${P[0]}/system/cluster" 2>/dev/null |
			jq '[.members[] | select(.state == "alive")] | length' 2>/dev/null || echo 0)
		[[ "$n" == "$1" ]] && return 0
		sleep 0.2
	done
	echo "MISMATCH: the cluster did not reach $1 alive members in 20 s" >&2
	exit 1
}
# codes KEY N: N requests for KEY, round-robin over the replicas' ports.
codes() {
	local i out=()
	for ((i = 0; i < $2; i++)); do
		out+=("$(curl -s -o /dev/null -w '%{http_code}' -H "X-API-Key: $1" "localhost:${P[i % ${#P[@]}]}/test")")
	done
	echo "${out[*]}"
}
repeat() { local i out=(); for ((i = 0; i < $2; i++)); do out+=("$1"); done; echo "${out[*]}"; }

say "docker compose up -d --scale node=3"
"${DC[@]}" up -d --scale node=3 node >/dev/null 2>&1
alive 3
examples/ports.sh

say "one count across replicas: 24 requests for free-demo-1"
expect "24 requests" "$(codes free-demo-1 24)" "$(repeat 200 20) $(repeat 429 4)"

say "DEGRADED on one replica, then wait for every replica"
curl -fsS -X POST "${AUTH[@]}" -d '{"status":"DEGRADED"}' "localhost:${P[1]}/system/health" >/dev/null
examples/wait-health.sh DEGRADED "${P[@]}"
expect "free in DEGRADED" "$(codes free-demo-2 4)" "200 200 429 429"
expect "pro's limit in DEGRADED" \
	"$(curl -s -D - -o /dev/null -H 'X-API-Key: pro-demo-1' "localhost:${P[2]}/test" | tr -d '\r' | awk -F': ' 'tolower($1) == "x-ratelimit-limit" {print $2}')" 100

say "scale to 5: the new replicas learn DEGRADED"
"${DC[@]}" up -d --scale node=5 node >/dev/null 2>&1
alive 5
examples/ports.sh
examples/wait-health.sh DEGRADED "${P[@]}"

say "NORMAL again, then back to 3"
curl -fsS -X POST "${AUTH[@]}" -d '{"status":"NORMAL"}' "localhost:${P[0]}/system/health" >/dev/null
examples/wait-health.sh NORMAL "${P[@]}"
"${DC[@]}" up -d --scale node=3 node >/dev/null 2>&1
alive 3
expect "members that left" "$(curl -fsS "${AUTH[@]}" "localhost:${P[0]}/system/cluster" | jq -r '[.members[] | select(.state == "left")] | length')" 2

if ((failed)); then
	echo "compose-demo.sh: some answers differ from the README" >&2
	exit 1
fi
echo "compose-demo.sh: every answer as the README says"
