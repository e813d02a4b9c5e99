#!/usr/bin/env bash
# wait-health.sh: wait until every node reports a health state, instead of
# guessing how long gossip takes.
#
#   ADMIN_TOKEN=secret examples/wait-health.sh DEGRADED 18080 18081 18082
#
# Polls GET /system/health on localhost:PORT for each port (a port may also
# be a base URL such as http://10.0.0.5:8080) every 50 ms, prints how long
# each node took, and exits 1 if one has not reported STATE within
# WAIT_SECONDS (default 10).
set -euo pipefail

if [[ $# -lt 2 || -z "${ADMIN_TOKEN:-}" ]]; then
	echo "usage: ADMIN_TOKEN=... $0 NORMAL|DEGRADED PORT|URL..." >&2
	exit 2
fi
want=$1
shift
deadline=$((SECONDS + ${WAIT_SECONDS:-10}))
start=$(date +%s%N)
for target in "$@"; do
	[[ "$target" == http* ]] || target="http://localhost:$target"
	until curl -fsS -m 2 -H "Authorization: Bearer $ADMIN_TOKEN" "$target/system/health" 2>/dev/null |
		grep -q "\"status\":\"$want\""; do
		if ((SECONDS >= deadline)); then
			echo "$target: not $want after ${WAIT_SECONDS:-10} s" >&2
			exit 1
		fi
		sleep 0.05
	done
	echo "$target: $want after $((($(date +%s%N) - start) / 1000000)) ms"
done
