# shellcheck shell=bash
# chaos/lib.sh: what processes.sh and compose.sh share. Sourced, not run.
#
# The caller sets, before sourcing:
#   OUT     the run directory (reports, logs, summary)
#   TOKEN   the admin bearer token the nodes were started with
#   NODES   the number of nodes (N in the bound)
# and defines ctl_curl, which runs curl where the nodes can be reached
# (the host, a network namespace, ...).
#
# Results are kept as JSON lines: $OUT/phases.jsonl (one line per loadgen
# run, written by eval_phase, and per job load, kind "jobs", written by
# processes.sh's eval_jobs) and $OUT/scenarios.jsonl (one line per
# scenario, written by end_scenario); finish_summary gathers them into
# $OUT/summary.json and prints the PASS/FAIL table.

# The over-admission bound per key and window, with N nodes and L the limit
# in force (the largest X-RateLimit-Limit the key saw), is the README's
# (High availability), asserted per phase:
#   kill, pause    L + ceil(L/10): counts move with their keys (the backup
#                  copy on a crash), so what a fault adds is the hits of the
#                  last backup interval before a crash and the checks
#                  decided locally while the owner could not be reached.
#                  The heal phase, L + ceil(L/N): the rejoin moves keys back
#                  to the node, which holds each to ceil(L/N) until the
#                  count it takes over lands (the README's H for a join).
#   rolling        L + ceil(L/3), over the whole deploy: each restart moves
#                  a key away from the node and back (a hand-off each way),
#                  and each move may cost the hits a new owner admits before
#                  the moved count reaches it (up to 6 for a free key at
#                  about 25 requests/s per key, over the 6 moves).
#   partition      L1 + L2 + ceil(L1/10), L1 and L2 the largest and second
#                  largest limits the key saw: the majority side keeps its
#                  full limit, the cut-off node applies its share of its own
#                  (ceil(L/N), or of another state's limit when the sides'
#                  health states differ), and a key the cut-off node owned
#                  also gets what that node admitted before its failing
#                  forwards showed it the cut (a fraction of a second).
#                  The heal phase, L1 + L2 + ceil(L1/5): the rejoin moves
#                  the cut-off node's keys back to it, a hand-off, and the
#                  node admits a key's hits from the members that already
#                  see it before the one that counted the key meanwhile
#                  does and hands the count over (the gossip of the rejoin,
#                  a few hundred ms: 16 hits for a pro key at about 50
#                  requests/s per key in one run).
BOUND_FORMULA='L + ceil(L/10) (kill, pause, restart; ceil(L/N) for a heal, a rejoin); L + ceil(L/3) (rolling, over the deploy); L1 + L2 + ceil(L1/10) (partition: the majority L1, the cut-off node its share L2; ceil(L1/5) for the heal, a hand-off)'
# BOUND_JQ is the bound of the phases judged next, a jq expression of $L
# (the largest limit seen), $lims (the limits seen, largest first) and $n:
# begin_scenario sets it, and eval_phase the partition's heal phase's.
BOUND_JQ='$L + cdiv($L; 10)'
# JOB_BOUND_FORMULA says the cost and concurrency bounds, for a caller
# whose phases have job lines (kind "jobs" in phases.jsonl, written by the
# caller: processes.sh's eval_jobs); empty when none has.
JOB_BOUND_FORMULA=${JOB_BOUND_FORMULA:-}

CHAOS_T0=$(date +%s)

# now_ms prints the time in milliseconds (to the second where the shell
# has no EPOCHREALTIME, as bash 3 on macOS).
now_ms() {
  if [ -n "${EPOCHREALTIME:-}" ]; then
    local s=${EPOCHREALTIME%[.,]*} f=${EPOCHREALTIME#*[.,]}
    echo $((s * 1000 + 10#${f:0:3}))
  else
    echo $(($(date +%s) * 1000))
  fi
}

# secs_since MS prints the seconds since MS (from now_ms), to 0.1 s.
secs_since() {
  local d=$(($(now_ms) - $1))
  printf '%d.%d' $((d / 1000)) $((d % 1000 / 100))
}

# pick_ports: sets BASE to a random base for 9 loopback ports, BASE +
# {0,1,2, 10,11,12, 20,21,22} (HTTP, gRPC and gossip of three nodes), all
# free, below the usual ephemeral ranges (Linux 32768+, macOS 49152+) so
# that no client connection holds one. Dies after 10 tries.
pick_ports() {
  local o ok=0
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    BASE=$((20000 + (RANDOM % 120) * 100))
    ok=1
    for o in 0 1 2 10 11 12 20 21 22; do
      ! (exec 3<>"/dev/tcp/127.0.0.1/$((BASE + o))") 2>/dev/null || ok=0
    done
    [ $ok = 1 ] && return 0
  done
  die "no free port range found"
}

say() { printf '[chaos %4ss] %s\n' $(($(date +%s) - CHAOS_T0)) "$*" >&2; }
die() { say "ERROR: $*"; exit 2; }

need() {
  local c
  for c in "$@"; do
    command -v "$c" >/dev/null 2>&1 || die "needs $c on PATH"
  done
}

# Failures of the scenario in progress, one per line.
SCENARIO=""
SCENARIO_FAILS=""
SCENARIO_FACTS="{}"

begin_scenario() {
  SCENARIO=$1
  SCENARIO_FAILS=""
  BOUND_JQ='$L + cdiv($L; 10)'
  SCENARIO_FACTS=$(jq -cn --arg s "$1" --arg d "$2" '{scenario: $s, description: $d}')
  if [ "$1" = partition ]; then BOUND_JQ='$lims[0] + ($lims[1] // 0) + cdiv($L; 10)'; fi
  if [ "$1" = rolling ]; then BOUND_JQ='$L + cdiv($L; 3)'; fi
  say "=== scenario $1: $2"
}

fail() {
  say "FAIL [$SCENARIO]: $*"
  SCENARIO_FAILS="${SCENARIO_FAILS}$*"$'\n'
}

# fact KEY JSON-VALUE records a measured figure of the scenario.
fact() {
  SCENARIO_FACTS=$(jq -c --arg k "$1" --argjson v "$2" '.[$k] = $v' <<<"$SCENARIO_FACTS")
}

# members URL prints "alive-count names-of-alive" as URL sees the cluster,
# or nothing if it does not answer.
members() {
  ctl_curl -fsS -m 2 -H "Authorization: Bearer $TOKEN" "$1/system/cluster" 2>/dev/null |
    jq -r '[.members[] | select(.state == "alive") | .name] | "\(length) \(sort | join(","))"' 2>/dev/null || true
}

# health URL prints "STATUS version origin" as URL sees it, or nothing.
health() {
  ctl_curl -fsS -m 2 -H "Authorization: Bearer $TOKEN" "$1/system/health" 2>/dev/null |
    jq -r '"\(.status) \(.version) \(.origin)"' 2>/dev/null || true
}

# set_health URL STATUS posts the state to one node.
set_health() {
  ctl_curl -fsS -m 3 -X POST -H "Authorization: Bearer $TOKEN" \
    -d "{\"status\":\"$2\"}" "$1/system/health" >/dev/null
}

# wait_members DEADLINE_S WANT URL... waits until every URL sees WANT alive
# members and all see the same ones. It prints the seconds it took and
# returns 0, or prints what each saw and returns 1 at the deadline.
wait_members() {
  local deadline=$1 want=$2 start u m first ok
  shift 2
  start=$(now_ms)
  while :; do
    ok=1 first=""
    for u in "$@"; do
      m=$(members "$u")
      [ -n "$m" ] && [ "${m%% *}" = "$want" ] || { ok=0; break; }
      [ -z "$first" ] && first=$m
      [ "$m" = "$first" ] || { ok=0; break; }
    done
    if [ $ok = 1 ]; then secs_since "$start"; return 0; fi
    if [ $(($(now_ms) - start)) -ge $((deadline * 1000)) ]; then
      for u in "$@"; do say "  $u sees: $(members "$u")"; done
      return 1
    fi
    sleep 0.2
  done
}

# STABLE_S is how long a converged membership must then hold: a member
# that flaps (alive, dead, alive) has not converged.
STABLE_S=10

# hold_members SECONDS WANT URL... checks every half second, for SECONDS,
# that every URL still sees the same WANT alive members; at the first
# difference it says what it saw and returns 1.
hold_members() {
  local secs=$1 want=$2 start u m first
  shift 2
  start=$(now_ms)
  while [ $(($(now_ms) - start)) -lt $((secs * 1000)) ]; do
    first=""
    for u in "$@"; do
      m=$(members "$u")
      if [ "${m%% *}" != "$want" ] || { [ -n "$first" ] && [ "$m" != "$first" ]; }; then
        say "  $(secs_since "$start")s later, $u sees: ${m:-no answer}"
        return 1
      fi
      first=$m
    done
    sleep 0.5
  done
  return 0
}

# converge: every node of URLS must see all NODES alive within
# CONVERGE_DEADLINE; the time from the call is recorded as converged_s.
converge() {
  local t
  if t=$(wait_members "$CONVERGE_DEADLINE" "$NODES" "${URLS[@]}"); then
    say "  all nodes see $NODES alive after ${t}s"
    fact converged_s "$t"
  else
    fail "the cluster did not converge back to $NODES within ${CONVERGE_DEADLINE}s"
  fi
}

# hold: the converged membership must last STABLE_S.
hold() {
  if hold_members "$STABLE_S" "$NODES" "${URLS[@]}"; then
    say "  still $NODES alive everywhere ${STABLE_S}s later"
  else
    fail "the cluster converged but did not hold for ${STABLE_S}s: a member flaps"
  fi
}

# wait_health DEADLINE_S WANT-STATUS URL... waits until every URL reports
# WANT-STATUS with the same version and origin; prints seconds or returns 1.
wait_health() {
  local deadline=$1 want=$2 start u h first ok
  shift 2
  start=$(now_ms)
  while :; do
    ok=1 first=""
    for u in "$@"; do
      h=$(health "$u")
      [ "${h%% *}" = "$want" ] || { ok=0; break; }
      [ -z "$first" ] && first=$h
      [ "$h" = "$first" ] || { ok=0; break; }
    done
    if [ $ok = 1 ]; then secs_since "$start"; return 0; fi
    if [ $(($(now_ms) - start)) -ge $((deadline * 1000)) ]; then
      for u in "$@"; do say "  $u health: $(health "$u")"; done
      return 1
    fi
    sleep 0.2
  done
}

# degrade_side URL...: posts DEGRADED to the first URL, and the URLs (one
# side of a cut) must agree on it within 10 s.
degrade_side() {
  local t
  set_health "$1" DEGRADED || fail "POST /system/health DEGRADED to $1 failed"
  if t=$(wait_health 10 DEGRADED "$@"); then
    say "  majority side DEGRADED after ${t}s"
  else
    fail "the majority side did not agree on DEGRADED within 10s"
  fi
}

# agree_after_heal START_MS URL: within 20 s of the heal at START_MS, every
# node (URLS) must report the state posted during the cut; URL, the healed
# node, shows what they agree on.
agree_after_heal() {
  local t
  if wait_health 20 DEGRADED "${URLS[@]}" >/dev/null; then
    t=$(secs_since "$1")
    say "  every node agrees on DEGRADED ($(health "$2")) ${t}s after the heal"
    fact health_converged_s "$t"
  else
    fail "the nodes did not agree on the health state within 20s of the heal"
  fi
}

# normal_from URL: a NORMAL posted on URL (the healed node) must reach every
# node within 10 s.
normal_from() {
  set_health "$1" NORMAL || fail "POST /system/health NORMAL to $1 failed"
  wait_health 10 NORMAL "${URLS[@]}" >/dev/null || fail "the nodes did not agree on NORMAL within 10s"
}

# eval_phase PHASE EXIT_CODE REPORT... judges the loadgen reports of one
# phase (several when loadgens ran side by side, on both sides of a cut,
# with the same keys: a key's admissions are then summed over them): no
# 5xx, no transport errors, no 401, and per tier the most any accuracy key
# was admitted within the bound. EXIT_CODE is the worst loadgen exit code.
# It appends the phase's line to phases.jsonl and a failure to the
# scenario for each broken rule.
eval_phase() {
  local phase=$1 rc=$2 line f r missing=0 bound=$BOUND_JQ
  shift 2
  if [ "${phase%-heal}" != "$phase" ]; then
    # A heal is a rejoin: a hand-off on top of the fault's own term.
    case $SCENARIO in
      partition) bound='$lims[0] + ($lims[1] // 0) + cdiv($L; 5)' ;;
      kill | pause) bound='$L + cdiv($L; $n)' ;;
    esac
  fi
  for r in "$@"; do
    jq -e '.requests' "$r" >/dev/null 2>&1 || { missing=1; say "  $phase: no report in $r: $(tail -3 "${r%.json}.err" 2>/dev/null)"; }
  done
  if [ $missing = 0 ] && line=$(jq -sce --arg s "$SCENARIO" --arg p "$phase" --argjson n "$NODES" --argjson rc "$rc" '
      def cdiv($a; $b): (($a + $b - 1) / $b | floor);
      def sum(f): map(f) | add // 0;
      . as $rs
      | [$rs[] | (.accuracy.tiers // [])[]] | group_by(.tier)
      | map(([.[].limits[]] | max) as $L | select($L != null)
          | ([.[].limits[]] | unique | sort | reverse) as $lims
          | ([.[].details[]] | group_by(.key) | map({key: .[0].key, admitted: sum(.admitted)})) as $keys
          | {tier: .[0].tier, limit: $L, keys: ($keys | length),
             admitted_max: ($keys | map(.admitted) | max), admitted_avg: ($keys | sum(.admitted) / length * 10 | round / 10),
             bound: ('"$bound"')}) as $tiers
      | {scenario: $s, phase: $p, loadgen_exit: $rc, targets: [$rs[].targets[]],
         requests: ($rs | sum(.requests)), elapsed_s: ($rs | map(.elapsed_seconds) | max * 10 | round / 10),
         ok: ($rs | sum(.status["200"])), limited: ($rs | sum(.status["429"])),
         unauthorized: ($rs | sum(.status["401"])), server_errors: ($rs | sum(.status["5xx"])),
         transport_errors: ($rs | sum(.status.transport_error)),
         transport_error_kinds: [$rs[].transport_errors[]], tiers: $tiers}
      | .failures = ([
          (select(.server_errors > 0) | "\(.server_errors) 5xx responses"),
          (select(.transport_errors > 0) | "\(.transport_errors) transport errors: \([.transport_error_kinds[] | "\(.count)x \(.error)"] | join("; "))"),
          (select(.unauthorized > 0) | "\(.unauthorized) 401s (nodes and loadgen disagree on keys)"),
          (select(.requests == 0) | "no requests"),
          (.tiers[] | select(.admitted_max > .bound) | "tier \(.tier): a key was admitted \(.admitted_max) times, over the bound \(.bound) (L=\(.limit))")
        ])' "$@" 2>/dev/null); then
    :
  else
    line=$(jq -cn --arg s "$SCENARIO" --arg p "$phase" --argjson rc "$rc" \
      '{scenario: $s, phase: $p, loadgen_exit: $rc, requests: 0, failures: ["loadgen wrote no report"]}')
  fi
  echo "$line" >>"$OUT/phases.jsonl"
  say "  $phase: $(jq -r '"\(.requests) requests, \(.server_errors // "-") 5xx, \(.transport_errors // "-") transport errors" + ([.tiers[]? | "; \(.tier) max \(.admitted_max) (L \(.limit), bound \(.bound))"] | join(""))' <<<"$line")"
  while IFS= read -r f; do
    [ -n "$f" ] && fail "$phase: $f"
  done < <(jq -r '.failures[]' <<<"$line")
}

# end_scenario writes the scenario's line to scenarios.jsonl.
end_scenario() {
  jq -c --arg fails "$SCENARIO_FAILS" --arg s "$SCENARIO" --slurpfile phases <(grep -F "\"scenario\":\"$SCENARIO\"" "$OUT/phases.jsonl" || true) '
    . + {phases: $phases,
         failures: ($fails | split("\n") | map(select(. != ""))),
         requests: ([$phases[].requests] | add // 0),
         server_errors: ([$phases[].server_errors // 0] | add // 0),
         transport_errors: ([$phases[].transport_errors // 0] | add // 0),
         tiers: ([$phases[].tiers[]?] | group_by(.tier) | map({tier: .[0].tier, limit: (map(.limit) | max),
                  admitted_max: (map(.admitted_max) | max), bound: (map(.bound) | max)})),
         jobs: ([$phases[].jobs[]?] | group_by(.tier) | map({tier: .[0].tier, jobs: (map(.jobs) | add),
                  cost_max: (map(.cost_max) | max), cost_limit: (map(.cost_limit) | max), cost_bound: (map(.cost_bound) | max),
                  conc_max: (map(.conc_max) | max), conc_limit: (map(.conc_limit) | max), conc_bound: (map(.conc_bound) | max),
                  healthy_max: (map(.healthy_max // empty) | max)}))}
    | .result = (if (.failures | length) == 0 then "PASS" else "FAIL" end)' <<<"$SCENARIO_FACTS" >>"$OUT/scenarios.jsonl"
  say "=== scenario $SCENARIO: $(if [ -z "$SCENARIO_FAILS" ]; then echo PASS; else echo FAIL; fi)"
  SCENARIO=""
}

# table aligns tab-separated columns, where column(1) exists.
table() {
  if command -v column >/dev/null 2>&1; then column -t -s $'\t'; else cat; fi
}

# finish_summary HEADER-JSON writes summary.json, prints the table and
# returns 1 if any scenario failed.
finish_summary() {
  jq -s --argjson h "$1" --arg formula "$BOUND_FORMULA" --arg jobs "$JOB_BOUND_FORMULA" \
    '$h + {bound: $formula} + (if $jobs == "" then {} else {job_bound: $jobs} end)
     + {result: (if all(.[]; .result == "PASS") and length > 0 then "PASS" else "FAIL" end), scenarios: .}' \
    "$OUT/scenarios.jsonl" >"$OUT/summary.json"
  echo
  jq -r '
    def t: [.tiers[] | "\(.tier) \(.admitted_max)/\(.limit)/\(.bound)"] | join("  ");
    def j: if (.jobs // []) == [] then "-" else [.jobs[] | "\(.tier) \(.cost_max)/\(.cost_limit)/\(.cost_bound) \(.conc_max)/\(.conc_limit)/\(.conc_bound)"] | join("  ") end;
    any(.scenarios[]; (.jobs // []) != []) as $withjobs
    | "scenario\trequests\t5xx\ttransport\tmax admitted/L/bound per key\(if $withjobs then "\tcost, in flight: max/L/bound per key" else "" end)\tdetected s\tconverged s\tresult",
    (.scenarios[] | "\(.scenario)\t\(.requests)\t\(.server_errors)\t\(.transport_errors)\t\(t)\(if $withjobs then "\t" + j else "" end)\t\(.detected_s // "-")\t\(.converged_s // "-")\t\(.result)")
  ' "$OUT/summary.json" | table
  jq -r '.scenarios[] | select(.result != "PASS") | .scenario as $s | .failures[] | "FAIL \($s): \(.)"' "$OUT/summary.json"
  echo "bound = $BOUND_FORMULA; N = $NODES"
  [ -z "$JOB_BOUND_FORMULA" ] || echo "cost, in flight: $JOB_BOUND_FORMULA"
  echo "summary: $OUT/summary.json  (result: $(jq -r .result "$OUT/summary.json"))"
  [ "$(jq -r .result "$OUT/summary.json")" = PASS ]
}
