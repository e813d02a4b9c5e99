#!/usr/bin/env bash
# ports.sh: the replicas of a compose cluster (docker-compose.yml), one line
# each: the replica's name, which is also its name in /system/cluster, and
# the host port Docker gave its HTTP port 8080.
#
#   examples/ports.sh        # tierlimit_node_1 18081 ...
#   examples/ports.sh -q     # the ports only, one line: 18081 18080 18082
#
# Run it from the directory that holds docker-compose.yml; COMPOSE_PROJECT_NAME
# and the other compose variables apply as usual. Uses `docker compose` if
# the plugin is installed, else docker-compose.
set -euo pipefail

if docker compose version >/dev/null 2>&1; then
	compose=(docker compose)
else
	compose=(docker-compose)
fi
quiet=false
[[ "${1:-}" == -q ]] && quiet=true

ids=$("${compose[@]}" ps -q node 2>/dev/null) || true
if [[ -z "$ids" ]]; then
	echo "ports.sh: no running replica of service node here; start them with: docker-compose up -d --scale node=3" >&2
	exit 1
fi
for id in $ids; do
	name=$(docker inspect -f '{{.Name}}' "$id")
	name=${name#/}
	# "0.0.0.0:18081" and maybe "[::]:18081": the port after the last colon.
	port=$(docker port "$id" 8080/tcp | head -n1)
	port=${port##*:}
	printf '%s %s\n' "$name" "$port"
done | sort -V | if $quiet; then cut -d' ' -f2 | paste -sd' '; else cat; fi
