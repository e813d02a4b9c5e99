#!/usr/bin/env bash
# scripts/check-metrics.sh: starts one cmd/node on 127.0.0.1 (the kernel
# picks its ports), sends it a few requests (admitted, without a key,
# refused), and runs `promtool check metrics` on its /metrics, which must
# report nothing. The node is stopped by its PID.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v promtool >/dev/null || { echo "check-metrics: needs promtool (Debian: apt-get install prometheus)" >&2; exit 2; }
command -v curl >/dev/null || { echo "check-metrics: needs curl" >&2; exit 2; }

dir=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT

go build -o "$dir/node" ./cmd/node
"$dir/node" -config config/tiers.json -node-name metrics-check -log-format json \
  -http-addr 127.0.0.1:0 -grpc-addr 127.0.0.1:0 -gossip-addr 127.0.0.1:0 >"$dir/log" 2>&1 &
pid=$!

addr=""
for _ in $(seq 100); do
  addr=$(sed -n 's/.*"http_addr":"\([^"]*\)".*/\1/p' "$dir/log" | head -n 1)
  [ -n "$addr" ] && break
  kill -0 "$pid" 2>/dev/null || { echo "check-metrics: the node exited:" >&2; cat "$dir/log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$addr" ] || { echo "check-metrics: the node did not start within 10s:" >&2; cat "$dir/log" >&2; exit 1; }

code() { curl -s -o /dev/null -w '%{http_code}' "$@" "http://$addr/test"; }
[ "$(code -H 'X-API-Key: pro-demo-1')" = 200 ] || { echo "check-metrics: a pro key was not admitted" >&2; exit 1; }
[ "$(code)" = 401 ] || { echo "check-metrics: a request without a key was not refused with 401" >&2; exit 1; }
refused=0
for _ in $(seq 30); do # the free tier's burst is 20
  if [ "$(code -H 'X-API-Key: free-demo-1')" = 429 ]; then refused=1; break; fi
done
[ $refused = 1 ] || { echo "check-metrics: a free key was never refused" >&2; exit 1; }

curl -sf "http://$addr/metrics" >"$dir/metrics"
if grep -n '=""' "$dir/metrics"; then
  echo "check-metrics: series with an empty label value (above)" >&2; exit 1
fi
echo "promtool check metrics: $(grep -c '^tierlimit_' "$dir/metrics") tierlimit_ samples, $(grep -c '^# TYPE' "$dir/metrics") families"
out=$(promtool check metrics <"$dir/metrics" 2>&1) || { echo "$out" >&2; exit 1; }
[ -z "$out" ] || { echo "$out" >&2; echo "check-metrics: promtool reported the problems above" >&2; exit 1; }
echo "promtool check metrics: clean"
