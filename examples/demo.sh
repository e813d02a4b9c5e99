#!/usr/bin/env bash
# demo.sh: walk through tier limits and the NORMAL/DEGRADED switch against a
# running tierlimit node.
#
# Usage:
#   ADMIN_TOKEN=secret examples/demo.sh [BASE_URL]
#
# BASE_URL is the first argument, else $BASE_URL, else http://localhost:8080.
# It may be one node or a load balancer in front of several.
#
# Environment:
#   ADMIN_TOKEN     required; the node's -admin-token
#   FREE_KEY        free key for the NORMAL part     (default free-demo-1)
#   FREE_KEY_2      free key for the DEGRADED part   (default free-demo-2)
#   PRO_KEY         pro key for the DEGRADED part    (default pro-demo-1)
#   SETTLE_SECONDS  wait after a state change so every node applies it (default 1)
#   NO_COLOR        set to disable colours
#
# Counts persist for the window (60 s in config/tiers.json): run the demo
# again within a minute and the keys start out already used. Wait a minute,
# or pick other keys: FREE_KEY=free-demo-3 FREE_KEY_2=... examples/demo.sh
#
# The script leaves the system NORMAL, even when interrupted, and exits 1 if
# any response differed from what the tiers promise.
#
# Needs curl; uses jq to pretty-print JSON if it is installed.

set -euo pipefail

BASE_URL="${1:-${BASE_URL:-http://localhost:8080}}"
BASE_URL="${BASE_URL%/}"
FREE_KEY="${FREE_KEY:-free-demo-1}"
FREE_KEY_2="${FREE_KEY_2:-free-demo-2}"
PRO_KEY="${PRO_KEY:-pro-demo-1}"
SETTLE_SECONDS="${SETTLE_SECONDS:-1}"

if [[ -z "${ADMIN_TOKEN:-}" ]]; then
	cat >&2 <<-'EOF'
		demo.sh: ADMIN_TOKEN is not set.
		Set it to the admin token the node was started with (-admin-token or ADMIN_TOKEN), e.g.
		    ADMIN_TOKEN=secret examples/demo.sh http://localhost:8080
	EOF
	exit 2
fi
if ! command -v curl >/dev/null 2>&1; then
	echo "demo.sh: curl is required" >&2
	exit 2
fi
HAVE_JQ=false
if command -v jq >/dev/null 2>&1; then
	HAVE_JQ=true
fi

if [[ -t 1 && -z "${NO_COLOR:-}" ]]; then
	BOLD=$'\e[1m' GREEN=$'\e[32m' YELLOW=$'\e[33m' RED=$'\e[31m' RESET=$'\e[0m'
else
	BOLD='' GREEN='' YELLOW='' RED='' RESET=''
fi

TMP="$(mktemp -d)"
MISMATCHES=0
LEFT_DEGRADED=false # true while this script has the system DEGRADED

cleanup() {
	if [[ "$LEFT_DEGRADED" == true ]]; then
		echo "demo.sh: interrupted while DEGRADED; setting NORMAL again" >&2
		curl -sS -o /dev/null --max-time 5 -X POST \
			-H "Authorization: Bearer $ADMIN_TOKEN" -H 'Content-Type: application/json' \
			--data '{"status":"NORMAL"}' "$BASE_URL/system/health" || true
	fi
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP # run cleanup on Ctrl-C too

die() {
	echo "${RED}demo.sh: $*${RESET}" >&2
	exit 1
}

section() {
	printf '\n%s== %s ==%s\n' "$BOLD" "$*" "$RESET"
}

# check DESCRIPTION GOT WANT: print whether a result matched the contract.
check() {
	if [[ "$2" == "$3" ]]; then
		printf '   %sOK%s  %s: %s\n' "$GREEN" "$RESET" "$1" "$2"
	else
		printf '   %sMISMATCH%s  %s: got %s, want %s\n' "$RED" "$RESET" "$1" "$2" "$3"
		MISMATCHES=$((MISMATCHES + 1))
	fi
}

# header NAME: the value of header NAME in the last response, case-insensitive.
header() {
	awk -v name="$(printf '%s' "$1" | tr '[:upper:]' '[:lower:]')" '
		{ sub(/\r$/, "") }
		index(tolower($0), name ":") == 1 { v = substr($0, length(name) + 2); sub(/^[ \t]+/, "", v) }
		END { print v }
	' "$TMP/headers"
}

# json_field NAME: a top-level string or number field of the last body.
json_field() {
	if [[ "$HAVE_JQ" == true ]]; then
		jq -r --arg f "$1" '.[$f] // empty' "$TMP/body" 2>/dev/null || true
	else
		sed -n "s/.*\"$1\"[[:space:]]*:[[:space:]]*\"\{0,1\}\([^\",}]*\)\"\{0,1\}.*/\1/p" "$TMP/body" | head -n 1
	fi
}

# show_body: the last body, compact.
show_body() {
	if [[ "$HAVE_JQ" == true ]] && jq -c . "$TMP/body" 2>/dev/null; then
		return
	fi
	tr -d '\n' <"$TMP/body"
	echo
}

# request METHOD PATH [curl args...]: send one request; sets CODE, leaves the
# headers and body in $TMP.
request() {
	local method="$1" path="$2"
	shift 2
	if ! CODE="$(curl -sS --max-time 10 -X "$method" -D "$TMP/headers" -o "$TMP/body" \
		-w '%{http_code}' "$@" "$BASE_URL$path")"; then
		die "cannot reach $BASE_URL$path; is the node running?"
	fi
}

admin() {
	request "$@" -H "Authorization: Bearer $ADMIN_TOKEN"
	if [[ "$CODE" == 401 ]]; then
		die "the node refused ADMIN_TOKEN (401 on $2)"
	fi
}

# set_health STATUS: POST the new state, show it, and wait until it is in force.
set_health() {
	admin POST /system/health -H 'Content-Type: application/json' --data "{\"status\":\"$1\"}"
	[[ "$CODE" == 200 ]] || die "POST /system/health $1: HTTP $CODE: $(cat "$TMP/body")"
	if [[ "$1" == DEGRADED ]]; then
		LEFT_DEGRADED=true
	else
		LEFT_DEGRADED=false
	fi
	printf '   POST /system/health {"status":"%s"} -> %s  ' "$1" "$CODE"
	show_body
	check "state after POST" "$(json_field status)" "$1"
	if [[ "$SETTLE_SECONDS" != 0 ]]; then
		printf '   waiting %s s so every node applies it\n' "$SETTLE_SECONDS"
		sleep "$SETTLE_SECONDS"
	fi
}

show_health() {
	admin GET /system/health
	[[ "$CODE" == 200 ]] || die "GET /system/health: HTTP $CODE: $(cat "$TMP/body")"
	printf '   GET /system/health -> %s  ' "$CODE"
	show_body
}

# hit KEY N [fresh]: send N requests to GET /test with KEY, one line each.
# Sets CODES (space-separated status codes) and LIMITS (the X-RateLimit-Limit
# values). With "fresh", warn if the key turns out to have been used already
# in this window.
hit() {
	local key="$1" n="$2" fresh="${3:-}" i colour limit remaining reset retry line now
	CODES='' LIMITS=''
	for ((i = 1; i <= n; i++)); do
		request GET /test -H "X-API-Key: $key"
		limit="$(header X-RateLimit-Limit)"
		remaining="$(header X-RateLimit-Remaining)"
		reset="$(header X-RateLimit-Reset)"
		retry="$(header Retry-After)"
		now="$(date +%s)"
		case "$CODE" in
		200) colour="$GREEN" ;;
		429) colour="$YELLOW" ;;
		*) colour="$RED" ;;
		esac
		line="$(printf '   #%-3d %-12s %s%s%s  limit=%-5s remaining=%-5s' \
			"$i" "$key" "$colour" "$CODE" "$RESET" "${limit:--}" "${remaining:--}")"
		if [[ "$reset" =~ ^[0-9]+$ && "$CODE" == 200 ]]; then
			line+="  all of it back in $((reset - now))s"
		elif [[ "$reset" =~ ^[0-9]+$ ]]; then
			line+="  admitted again in $((reset - now))s"
		fi
		if [[ -n "$retry" ]]; then
			line+="  retry-after=${retry}s"
		fi
		if [[ "$CODE" != 200 && "$CODE" != 429 ]]; then
			line+="  $(tr -d '\n' <"$TMP/body")"
		fi
		echo "$line"
		CODES+="${CODES:+ }$CODE"
		LIMITS+="${LIMITS:+ }${limit:--}"
		if [[ "$fresh" == fresh && "$i" == 1 && "$limit" =~ ^[0-9]+$ &&
			("$CODE" == 429 || "$remaining" != "$((limit - 1))") ]]; then
			printf '   %snote:%s %s was already used in this window (remaining %s after its first request here, not %s).\n' \
				"$YELLOW" "$RESET" "$key" "${remaining:--}" "$((limit - 1))"
			printf '         Counts persist for the window, so the checks below may not match: wait for the reset\n'
			printf '         or pick unused keys (FREE_KEY, FREE_KEY_2, PRO_KEY; see the top of this script).\n'
		fi
	done
}

# repeat WORD N: WORD N times, space-separated.
repeat() {
	local out='' i
	for ((i = 0; i < $2; i++)); do
		out+="${out:+ }$1"
	done
	printf '%s' "$out"
}

echo "${BOLD}tierlimit demo against $BASE_URL${RESET}"
echo "Keys: $FREE_KEY and $FREE_KEY_2 (free: 20/min NORMAL, 2/min DEGRADED), $PRO_KEY (pro: 150/min NORMAL, 100/min DEGRADED)."
echo "Counts last 60 s: running the demo twice within a minute starts from used keys."

section "1. NORMAL: free key $FREE_KEY gets its burst of 20"
set_health NORMAL
hit "$FREE_KEY" 22 fresh
check "status codes" "$CODES" "$(repeat 200 20) 429 429"
check "X-RateLimit-Limit" "$LIMITS" "$(repeat 20 22)"

section "2. Switch to DEGRADED"
set_health DEGRADED
show_health
check "state" "$(json_field status)" DEGRADED

section "3. DEGRADED: free key $FREE_KEY_2 is held to 2"
hit "$FREE_KEY_2" 3 fresh
check "status codes" "$CODES" "200 200 429"
check "X-RateLimit-Limit" "$LIMITS" "2 2 2"

section "4. DEGRADED: pro key $PRO_KEY keeps its SLA of 100"
hit "$PRO_KEY" 2 fresh
check "status codes" "$CODES" "200 200"
check "X-RateLimit-Limit" "$LIMITS" "100 100"

section "5. Back to NORMAL: $FREE_KEY_2 gets 20 again"
set_health NORMAL
show_health
hit "$FREE_KEY_2" 1
check "status code" "$CODES" 200
check "X-RateLimit-Limit" "$LIMITS" 20
echo "   (remaining counts the hits $FREE_KEY_2 made while DEGRADED: the count is kept, only the limit changed)"

echo
if ((MISMATCHES == 0)); then
	echo "${GREEN}${BOLD}Done: every response matched the tier limits.${RESET}"
else
	echo "${RED}${BOLD}Done: $MISMATCHES check(s) did not match; see MISMATCH above.${RESET}"
	exit 1
fi
