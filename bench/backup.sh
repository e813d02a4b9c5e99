#!/usr/bin/env bash
# bench/backup.sh: what the crash backups cost. Runs a 3-node cluster on
# loopback under the same load (loadgen, c=64, enterprise keys whose limit
# never binds, so every request is a full check) with backups every 100 ms
# (the default) and with backups every hour (as good as off for a 10 s run),
# alternately, ROUNDS times each, and prints, per setting, the median of:
# throughput, the nodes' CPU (all three together, in cores), their resident
# memory, the backup copies held, and the backup traffic (copies sent per
# second; each is the key and three numbers on the wire, about 20 bytes
# more than the key).
#
#   bench/backup.sh             # about 3 minutes; ROUNDS=3 (env) by default
#
# Every process it starts is stopped on exit. Ports: BENCH_PORT (default
# 24400) .. +8 on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
PORT=${BENCH_PORT:-24400}
DUR=10
KEYS=2000
OUT=$(mktemp -d "${TMPDIR:-/tmp}/tierlimit-backup.XXXXXX")
BIN=$OUT/bin
PIDS=()
log() { printf '[backup] %s\n' "$*" >&2; }
stop_all() {
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
}
trap stop_all EXIT

mkdir -p "$BIN"
go build -trimpath -o "$BIN/node" ./cmd/node
(cd bench && go build -trimpath -o "$BIN/loadgen" ./loadgen) # the bench module's (bench/go.mod)
"$BIN/loadgen" -config config/tiers.json -gen-config "$OUT/tiers.json" -gen-keys "$KEYS" >/dev/null

# metric URL NAME: the sum of a metric's samples whose line starts with NAME.
metric() { curl -fsS "$1/metrics" | awk -v n="$2" 'index($0, n) == 1 { s += $NF } END { printf "%.0f\n", s }'; }
# cpu_ticks PID: user+system clock ticks of a process.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }

# run SETTING INTERVAL: one measured run; prints one line of numbers.
run() {
  local interval=$2 i urls=() targets t0 t1 c0=0 c1=0 m0=0 m1=0 rss=0 copies=0 rps
  for i in 0 1 2; do
    local join=()
    [ "$i" -gt 0 ] && join=(-join "127.0.0.1:$((PORT + 6))")
    "$BIN/node" -config "$OUT/tiers.json" -node-name "n$i" -admin-token t -log-format json -log-level warn \
      -backup-interval "$interval" -http-addr "127.0.0.1:$((PORT + i))" \
      -grpc-addr "127.0.0.1:$((PORT + 3 + i))" -gossip-addr "127.0.0.1:$((PORT + 6 + i))" "${join[@]}" \
      2>>"$OUT/nodes.log" &
    PIDS+=($!)
    urls+=("http://127.0.0.1:$((PORT + i))")
    until curl -fsS -m 1 "${urls[i]}/readyz" >/dev/null 2>&1; do sleep 0.1; done
  done
  until [ "$(metric "${urls[0]}" tierlimit_cluster_members)" = 3 ] && [ "$(metric "${urls[2]}" tierlimit_cluster_members)" = 3 ]; do sleep 0.1; done
  targets=$(IFS=,; echo "${urls[*]}")
  "$BIN/loadgen" -config "$OUT/tiers.json" -mix enterprise=100 -keys "$KEYS" -targets "$targets" -c 64 -d 2s -quiet -json >/dev/null
  for i in 0 1 2; do
    c0=$((c0 + $(cpu_ticks "${PIDS[i]}")))
    m0=$((m0 + $(metric "${urls[i]}" 'tierlimit_counts_moved_total{kind="backup",result="ok"}')))
  done
  t0=$(date +%s.%N)
  rps=$("$BIN/loadgen" -config "$OUT/tiers.json" -mix enterprise=100 -keys "$KEYS" -targets "$targets" -c 64 -d "${DUR}s" -quiet -json |
    jq -r '.requests / .elapsed_seconds | floor')
  t1=$(date +%s.%N)
  for i in 0 1 2; do
    c1=$((c1 + $(cpu_ticks "${PIDS[i]}")))
    m1=$((m1 + $(metric "${urls[i]}" 'tierlimit_counts_moved_total{kind="backup",result="ok"}')))
    rss=$((rss + $(rss_kb "${PIDS[i]}")))
    copies=$((copies + $(metric "${urls[i]}" tierlimit_backup_keys)))
  done
  stop_all
  awk -v s="$1" -v rps="$rps" -v c="$((c1 - c0))" -v hz="$(getconf CLK_TCK)" -v t0="$t0" -v t1="$t1" \
    -v m="$((m1 - m0))" -v rss="$rss" -v copies="$copies" \
    'BEGIN { d = t1 - t0; printf "%s %d %.2f %d %d %.0f\n", s, rps, c / hz / d, rss / 1024, copies, m / d }'
}

log "run directory $OUT; $ROUNDS rounds of each setting, ${DUR}s each, c=64, $KEYS enterprise keys"
: >"$OUT/runs.txt"
for r in $(seq 1 "$ROUNDS"); do
  order="on off"
  [ $((r % 2)) = 0 ] && order="off on" # alternate, so that drift over time favours neither
  for setting in $order; do
    interval=100ms
    [ "$setting" = off ] && interval=1h
    line=$(run "$setting" "$interval")
    log "round $r: $line"
    echo "$line" >>"$OUT/runs.txt"
  done
done

# median SETTING COLUMN
median() { grep "^$1 " "$OUT/runs.txt" | awk -v c="$2" '{ print $c }' | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
printf '%-9s %8s %14s %14s %10s %12s %14s\n' backups req/s "CPU (cores)" "CPU µs/req" "RSS MiB" "copies held" "copies sent/s"
for setting in on off; do
  rps=$(median "$setting" 2) cpu=$(median "$setting" 3)
  printf '%-9s %8s %14s %14s %10s %12s %14s\n' "$([ "$setting" = on ] && echo 100ms || echo "1h (off)")" "$rps" "$cpu" \
    "$(awk -v c="$cpu" -v r="$rps" 'BEGIN { printf "%.1f", c * 1e6 / r }')" "$(median "$setting" 4)" "$(median "$setting" 5)" "$(median "$setting" 6)"
done
echo "3 nodes together; medians of $ROUNDS runs each; commit $(git rev-parse --short HEAD); $(nproc) CPUs shared with loadgen"
