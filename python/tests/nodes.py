"""Real cmd/node and uvicorn processes for the tests, on free 127.0.0.1
ports, each stopped by its PID."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

# The interpreter running the tests (/usr/bin/python3: Debian's, with
# fastapi, uvicorn and httpx) also runs uvicorn.
PYTHON = sys.executable
ADMIN_TOKEN = "test-admin-token"
TESTS = Path(__file__).resolve().parent
PACKAGE_ROOT = TESTS.parent  # python/


def free_port(udp: bool = False) -> int:
    """A TCP port (and, with udp, the same UDP port) free on 127.0.0.1 right now."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            if not udp:
                return port
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port


def poll(what: str, check, timeout: float = 10.0, every: float = 0.02):
    """Calls check until it returns something true, and returns that; fails
    the test after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not after {timeout} s")
        time.sleep(every)


def request(port: int, method: str, path: str, body: Optional[bytes] = None,
            headers: Optional[Dict[str, str]] = None, timeout: float = 2.0):
    """One HTTP request to 127.0.0.1:port: (status, headers, body), or None
    if the connection failed."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    except OSError:
        return None
    finally:
        conn.close()


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """Stops proc by its PID: sig, a wait, then SIGKILL if it has not ended."""
    if proc.poll() is not None:
        return
    try:
        os.kill(proc.pid, signal.SIGCONT)  # a paused process cannot end
        os.kill(proc.pid, sig)
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    except ProcessLookupError:
        proc.wait(10)


class Node:
    """One cmd/node process. start() picks free ports the first time
    (retrying on a clash) and keeps them, so a restart comes back on the
    same ones."""

    def __init__(self, binary: Path, tiers: Path, name: str, workdir: Path, join: Optional["Node"] = None,
                 flags: Sequence[str] = ()) -> None:
        self.binary = binary
        self.flags = list(flags)
        self.tiers = tiers
        self.name = name
        self.workdir = workdir
        self.join = join
        self.http_port = 0
        self.grpc_port = 0
        self.gossip_port = 0
        self.proc: Optional[subprocess.Popen] = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.{self.starts}.log"

    def start(self) -> "Node":
        fixed = self.http_port != 0
        for attempt in range(5):
            if not fixed:
                self.http_port, self.grpc_port, self.gossip_port = free_port(), free_port(), free_port(udp=True)
            self.starts += 1
            args = [
                str(self.binary), "-config", str(self.tiers), "-node-name", self.name,
                "-admin-token", ADMIN_TOKEN,
                "-http-addr", f"127.0.0.1:{self.http_port}",
                "-grpc-addr", f"127.0.0.1:{self.grpc_port}",
                "-gossip-addr", f"127.0.0.1:{self.gossip_port}",
                "-log-format", "json",
            ] + self.flags
            if self.join is not None:
                args += ["-join", f"127.0.0.1:{self.join.gossip_port}"]
            with open(self.log_path, "wb") as log:
                self.proc = subprocess.Popen(args, stdout=log, stderr=log)
            if self._wait_started():
                poll(f"{self.name} GET /readyz 200",
                     lambda: (request(self.http_port, "GET", "/readyz") or (0,))[0] == 200)
                return self
            text = self.log_path.read_text()
            if "address already in use" not in text or fixed:
                raise AssertionError(f"node {self.name} did not start:\n{text}")
        raise AssertionError(f"node {self.name}: no free ports after 5 tries")

    def _wait_started(self) -> bool:
        """Reports whether the node logged "node started"; False if it exited first."""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            for line in self.log_path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if entry.get("msg") == "node started":
                    assert entry["http_addr"] == f"127.0.0.1:{self.http_port}", entry
                    return True
            if self.proc is not None and self.proc.poll() is not None:
                return False
            time.sleep(0.02)
        raise AssertionError(f"node {self.name}: no 'node started' in 15 s:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)

    def pause(self) -> None:
        """Stops the node's process with SIGSTOP, and returns once every
        thread of it is stopped: kill only queues the signal."""
        assert self.proc is not None
        pid = self.proc.pid
        os.kill(pid, signal.SIGSTOP)

        def stopped() -> bool:
            for task in Path(f"/proc/{pid}/task").iterdir():
                stat = (task / "stat").read_text()
                if stat[stat.rindex(")") + 2] not in "Tt":
                    return False
            return True

        poll(f"{self.name} stopped", stopped, timeout=5, every=0.001)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def _admin(self, method: str, path: str, body: Optional[dict] = None) -> dict:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}
        got = request(self.http_port, method, path, json.dumps(body).encode() if body else None, headers)
        assert got is not None, f"{method} {path} on {self.name}: no answer"
        status, _, data = got
        assert status == 200, f"{method} {path} on {self.name} = {status} {data!r}, want 200"
        return json.loads(data)

    def set_health(self, status: str) -> None:
        got = self._admin("POST", "/system/health", {"status": status})
        assert got["status"] == status, got

    def health(self) -> str:
        return self._admin("GET", "/system/health")["status"]

    def health_doc(self) -> dict:
        """GET /system/health's whole body."""
        return self._admin("GET", "/system/health")

    def alive_members(self) -> int:
        return sum(1 for m in self._admin("GET", "/system/cluster")["members"] if m["state"] == "alive")


def wait_health(nodes: Sequence[Node], status: str) -> None:
    for n in nodes:
        poll(f"{n.name} health {status}", lambda n=n: n.health() == status, timeout=5)


class Uvicorn:
    """A uvicorn process serving tests/apps.py's app, beside node."""

    def __init__(self, node_url: str, workdir: Path, name: str, env: Optional[Dict[str, str]] = None) -> None:
        self.node_url = node_url
        self.extra_env = dict(env or {})
        self.workdir = workdir
        self.name = name
        self.port = 0
        self.proc: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Uvicorn":
        env = dict(os.environ, TIERLIMIT_NODE=self.node_url,
                   PYTHONPATH=os.pathsep.join([str(PACKAGE_ROOT), str(TESTS)]), **self.extra_env)
        for attempt in range(5):
            self.port = free_port()
            log_path = self.workdir / f"{self.name}.{attempt}.log"
            args: List[str] = [PYTHON, "-m", "uvicorn", "--factory", "apps:app_from_env",
                               "--host", "127.0.0.1", "--port", str(self.port), "--no-access-log"]
            with open(log_path, "wb") as log:
                self.proc = subprocess.Popen(args, stdout=log, stderr=log, env=env, cwd=str(TESTS))
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and self.proc.poll() is None:
                got = request(self.port, "GET", "/healthz", timeout=0.5)
                if got is not None and got[0] == 200:
                    self.log_path = log_path
                    return self
                time.sleep(0.05)
            stop(self.proc)
            text = log_path.read_text()
            if "address already in use" not in text.lower():
                raise AssertionError(f"uvicorn {self.name} did not start:\n{text}")
        raise AssertionError(f"uvicorn {self.name}: no free port after 5 tries")

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
