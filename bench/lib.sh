# shellcheck shell=bash
# bench/lib.sh: what the scripts that start a cluster of cmd/node and
# measure it share. Source it after defining log and die; it uses these
# globals of the script: TOKEN (the admin token), PIDS (the processes it
# started), OUT (its run directory), QUIET_WAIT (seconds wait_quiet may
# wait). Bash only.

NCPU=$(nproc)

# wait_ready URL: URL/readyz answers 200 within 20 s.
wait_ready() {
  local url=$1 deadline=$((SECONDS + 20))
  until curl -fsS --max-time 1 "$url/readyz" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "not ready at $url after 20 s${LOGS:+; see $LOGS}"
    sleep 0.1
  done
}

# wait_members URL...: every node sees 3 alive members, within 30 s.
wait_members() {
  local url n deadline=$((SECONDS + 30))
  for url in "$@"; do
    while :; do
      n=$(curl -fsS --max-time 1 -H "Authorization: Bearer $TOKEN" "$url/system/cluster" 2>/dev/null |
        grep -o '"state":"alive"' | wc -l) || n=0
      [ "$n" -ge 3 ] && break
      [ $SECONDS -lt $deadline ] || die "$url sees $n alive members after 30 s"
      sleep 0.2
    done
  done
}

# cpu_busy: CPU seconds the machine has been busy since it booted.
cpu_busy() { awk '/^cpu / { printf "%.2f", ($2 + $3 + $4 + $7 + $8 + $9) / 100 }' /proc/stat; }

# cpu_ours sets OURS: CPU seconds used so far by the processes we started
# and by this shell's reaped children (not in a $(…): `times` must run here).
cpu_ours() {
  local pid servers
  servers=$(for pid in "${PIDS[@]}"; do cat "/proc/$pid/stat" 2>/dev/null; done |
    awk '{ s += $14 + $15 } END { printf "%.2f", s / 100 }')
  times >"$OUT/times"
  OURS=$(tail -n 1 "$OUT/times" | awk -v s="$servers" '{
    for (i = 1; i <= 2; i++) { split($i, a, "m"); sub("s", "", a[2]); s += a[1] * 60 + a[2] }
    printf "%.2f", s }')
}

# others_begin / others_end: OTHERS, the percent of the machine's CPUs that
# other programs used between the two calls.
others_begin() { B0=$(cpu_busy); cpu_ours; O0=$OURS; T0=$EPOCHREALTIME; }
others_end() {
  local busy
  busy=$(cpu_busy); cpu_ours
  OTHERS=$(awk -v b0="$B0" -v o0="$O0" -v t0="$T0" -v b1="$busy" -v o1="$OURS" -v t1="$EPOCHREALTIME" -v n="$NCPU" \
    'BEGIN { x = ((b1 - b0) - (o1 - o0)) / ((t1 - t0) * n) * 100; if (x < 0) x = 0; printf "%.0f", x }')
}

# wait_quiet: waits, at most QUIET_WAIT seconds, until other programs use
# less than 10% of the machine over 2 s.
wait_quiet() {
  local deadline=$((SECONDS + QUIET_WAIT)) said=
  [ "$QUIET_WAIT" -gt 0 ] || return 0
  while :; do
    others_begin
    sleep 2
    others_end
    [ "$OTHERS" -lt 10 ] && { [ -n "$said" ] && log "machine quiet again"; return 0; }
    [ $SECONDS -lt "$deadline" ] || { log "machine still busy (others: $OTHERS%): measuring anyway"; return 0; }
    [ -n "$said" ] || log "other programs use $OTHERS% of the machine: waiting up to $QUIET_WAIT s"
    said=1
  done
}
