"""Per-check cost of asking the node: this package's client against httpx.

    cd python && /usr/bin/python3 bench/check_cost.py            # builds cmd/node
    cd python && /usr/bin/python3 bench/check_cost.py --node /path/to/node -n 20000

It starts one node on loopback (a tiers file of its own, one key with a
limit no run reaches), then, for each way of asking, one sequential caller
sends n checks over one keep-alive connection and reports Python CPU per
call (time.process_time: this process only, not the node) and wall time
per call (mean and p50). The rows:

  tierlimit client       tierlimit._node.NodeClient.authorize (the middleware's client)
  ... under wait_for     the same call inside asyncio.wait_for: what a task per call costs
  asyncio streams        a raw HTTP/1.1 request on asyncio streams, minimal parse
  httpx.AsyncClient      httpx.AsyncClient.get, with a timeout
  FastAPI bare           a FastAPI app called through ASGI directly, no server
  FastAPI + middleware   the same app with TierLimitMiddleware: the whole added cost
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import httpx  # noqa: E402
from fastapi import FastAPI  # noqa: E402

from tierlimit import TierLimitMiddleware  # noqa: E402
from tierlimit._node import NodeClient  # noqa: E402

KEY = b"bench-key-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_node(binary: str, tmp: str) -> tuple[subprocess.Popen, int]:
    tiers = Path(tmp, "tiers.json")
    tiers.write_text(json.dumps({
        "window_seconds": 60,
        "tiers": {"bench": {"limit": 100_000_000}},
        "api_keys": {KEY.decode(): "bench"},
    }))
    http = free_port()
    log = open(Path(tmp, "node.log"), "wb")
    proc = subprocess.Popen(
        [binary, "-config", str(tiers), "-node-name", "bench", "-admin-token", "tok",
         "-http-addr", f"127.0.0.1:{http}", "-grpc-addr", f"127.0.0.1:{free_port()}",
         "-gossip-addr", f"127.0.0.1:{free_port()}", "-log-format", "json"],
        stdout=log, stderr=log,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"node exited: {Path(tmp, 'node.log').read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", http), timeout=0.2) as s:
                s.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return proc, http
        except OSError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("node not ready in 10 s")


async def measure(call, n: int) -> tuple[float, float, list[float]]:
    """CPU and wall seconds for n sequential calls, and each call's wall time."""
    walls = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        await call()
        walls.append(time.perf_counter() - t)
    return time.process_time() - cpu0, time.perf_counter() - wall0, walls


async def measure_all(rows: list[tuple[str, object]], n: int, rounds: int) -> list[dict]:
    """Measures every row in turn, round after round, so that a change in the
    machine's load falls on all rows alike; a row's figures are the medians
    of its rounds' means, and the p50 of all its calls."""
    for _, call in rows:
        for _ in range(min(1000, n)):
            await call()
    per = max(1, n // rounds)
    got: dict[str, list] = {name: [] for name, _ in rows}
    for _ in range(rounds):
        for name, call in rows:
            got[name].append(await measure(call, per))
    out = []
    for name, _ in rows:
        cpu = statistics.median(c / per for c, _, _ in got[name])
        wall = statistics.median(w / per for _, w, _ in got[name])
        p50 = statistics.median(x for _, _, ws in got[name] for x in ws)
        out.append({"name": name, "cpu_us": cpu * 1e6, "wall_us": wall * 1e6, "p50_us": p50 * 1e6})
    return out


async def run(port: int, n: int, rounds: int) -> list[dict]:
    rows: list[tuple[str, object]] = []
    client = NodeClient("127.0.0.1", port, timeout=1.0)

    async def ours():
        a = await client.authorize([KEY])
        assert a.status == 200, a

    rows.append(("tierlimit client", ours))

    async def ours_wait_for():
        a = await asyncio.wait_for(client.authorize([KEY]), 1.0)
        assert a.status == 200, a

    rows.append(("... under wait_for", ours_wait_for))

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    req = f"GET /authorize HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-API-Key: {KEY.decode()}\r\n\r\n".encode()

    async def streams():
        writer.write(req)
        head = await reader.readuntil(b"\r\n\r\n")
        i = head.lower().find(b"\r\ncontent-length: ")
        length = int(head[i + 18 : head.find(b"\r\n", i + 2)])
        if length:
            await reader.readexactly(length)
        assert head.startswith(b"HTTP/1.1 200")

    rows.append(("asyncio streams", streams))

    hc = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=1.0)

    async def with_httpx():
        r = await hc.get("/authorize", headers={"X-API-Key": KEY.decode()})
        assert r.status_code == 200, r

    rows.append(("httpx.AsyncClient", with_httpx))

    def fastapi_app(limited: bool) -> FastAPI:
        app = FastAPI()
        if limited:
            app.add_middleware(TierLimitMiddleware, node=f"http://127.0.0.1:{port}")

        @app.get("/v1/x")
        async def x() -> dict:
            return {"ok": True}

        return app

    for name, app in (("FastAPI bare", fastapi_app(False)), ("FastAPI + middleware", fastapi_app(True))):
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
            "scheme": "http", "path": "/v1/x", "raw_path": b"/v1/x", "root_path": "", "query_string": b"",
            "headers": [(b"host", b"app"), (b"x-api-key", KEY)], "client": ("127.0.0.1", 1), "server": ("app", 80),
        }

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        status = []

        async def send(message):
            if message["type"] == "http.response.start":
                status.append(message["status"])

        async def call(app=app):
            status.clear()
            await app(dict(scope), receive, send)
            assert status == [200], status

        rows.append((name, call))
    try:
        return await measure_all(rows, n, rounds)
    finally:
        client.close()
        writer.close()
        await hc.aclose()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--node", help="a built cmd/node binary; default: go build it from the repository")
    p.add_argument("-n", type=int, default=20000, help="calls per row (default 20000)")
    p.add_argument("-rounds", type=int, default=10, help="rounds the calls of each row are split in (default 10)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        binary = args.node
        if binary is None:
            binary = str(Path(tmp, "node"))
            subprocess.run(["go", "build", "-o", binary, "./cmd/node"], cwd=HERE.parent.parent, check=True, timeout=300)
        proc, port = start_node(binary, tmp)
        try:
            rows = asyncio.run(run(port, args.n, args.rounds))
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    print(f"Python {sys.version.split()[0]}, httpx {httpx.__version__}, {os.cpu_count()} CPUs, n={args.n} sequential calls per row in {args.rounds} rounds, load average {os.getloadavg()[0]:.1f}")
    print(f"{'':22} {'CPU/call':>10} {'wall/call':>10} {'wall p50':>10}")
    for r in rows:
        print(f"{r['name']:22} {r['cpu_us']:8.0f} µs {r['wall_us']:8.0f} µs {r['p50_us']:8.0f} µs")
    base = {r["name"]: r for r in rows}
    added = base["FastAPI + middleware"]["cpu_us"] - base["FastAPI bare"]["cpu_us"]
    print(f"the middleware adds {added:.0f} µs of CPU per request to a FastAPI app; "
          f"httpx costs {base['httpx.AsyncClient']['cpu_us'] / base['tierlimit client']['cpu_us']:.1f}× this client's CPU per check")


if __name__ == "__main__":
    main()
