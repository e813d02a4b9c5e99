"""Fixtures: cmd/node built once, real node processes on free ports, fresh
API keys. Every process is stopped by its PID at teardown."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
from pathlib import Path
from typing import Callable, Iterator, List

import pytest

from nodes import Node, Uvicorn, poll, wait_health

REPO = Path(__file__).resolve().parents[2]  # python/tests -> the module root

# The tiers the tests count against: the shipped ones, with keys of their own.
TIERS = {"free": {"limit": 10, "burst": 20, "degraded": 2},
         "pro": {"limit": 100, "burst": 150, "degraded": 100},
         "enterprise": {"limit": 1000, "burst": 1500, "degraded": 1000},
         # A GPU tier: cost per window in audio-seconds, and one job at once.
         "gpu": {"limit": 100, "cost": {"limit": 1000, "default_estimate": 60}, "concurrency": {"limit": 1}}}
KEYS_PER_TIER = 200

# The cluster's nodes count every hit at the key's owner, so that the tests
# can expect X-Ratelimit-Remaining to fall by exactly one per request
# whichever node asks: no leases (a node holding a lease admits from it, and
# the owner's count moves by the lease's size), and a forward deadline no
# busy test machine reaches (past it a node decides alone, from its share).
# With cmd/node's defaults the admitted counts stay exact (examples/fastapi/
# run.sh checks 20 x 200 then 429 with them), but a node spending a lease
# reports its own view of Remaining, which may run ahead of the owner's.
EXACT_CLUSTER_FLAGS = ("-lease-ttl=-1s", "-forward-timeout=500ms")


@pytest.fixture(scope="session")
def node_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cmd/node, built once per session with go build."""
    go = shutil.which("go")
    if go is None:
        pytest.fail("go is not on PATH: the tests build cmd/node with `go build` from "
                    f"{REPO}; install Go (go.mod says which version) and run them again", pytrace=False)
    if not (REPO / "go.mod").is_file():
        pytest.fail(f"no go.mod in {REPO}: the tests expect to sit in python/tests of the tierlimit module",
                    pytrace=False)
    out = tmp_path_factory.mktemp("bin") / "node"
    build = subprocess.run([go, "build", "-o", str(out), "./cmd/node"], cwd=REPO,
                           capture_output=True, text=True, timeout=600)
    if build.returncode != 0:
        pytest.fail(f"go build ./cmd/node failed:\n{build.stderr}", pytrace=False)
    return out


@pytest.fixture(scope="session")
def tiers_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    keys = {f"{tier}-t{i}": tier for tier in TIERS for i in range(KEYS_PER_TIER)}
    path = tmp_path_factory.mktemp("tiers") / "tiers.json"
    path.write_text(json.dumps({"window_seconds": 60, "cost_unit": "audio-seconds", "tiers": TIERS, "api_keys": keys}))
    return path


@pytest.fixture(scope="session")
def fresh_key() -> Callable[[str], str]:
    """fresh_key(tier) returns a key of tier that no test has used yet."""
    counters = {tier: itertools.count() for tier in TIERS}

    def fresh(tier: str) -> str:
        i = next(counters[tier])
        assert i < KEYS_PER_TIER, f"out of fresh {tier} keys"
        return f"{tier}-t{i}"

    return fresh


@pytest.fixture(scope="session")
def cluster(node_binary: Path, tiers_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[List[Node]]:
    """Two nodes in one cluster, both joined and NORMAL."""
    work = tmp_path_factory.mktemp("cluster")
    nodes: List[Node] = []
    try:
        nodes.append(Node(node_binary, tiers_file, "n1", work, flags=EXACT_CLUSTER_FLAGS).start())
        nodes.append(Node(node_binary, tiers_file, "n2", work, join=nodes[0], flags=EXACT_CLUSTER_FLAGS).start())
        for n in nodes:
            poll(f"{n.name} sees 2 alive members", lambda n=n: n.alive_members() == 2)
        wait_health(nodes, "NORMAL")
        yield nodes
    finally:
        for n in reversed(nodes):
            n.stop()


@pytest.fixture
def lone_node(node_binary: Path, tiers_file: Path, tmp_path: Path) -> Iterator[Node]:
    """A node of its own, for a test that stops or pauses it."""
    node = Node(node_binary, tiers_file, "lone", tmp_path)
    try:
        yield node.start()
    finally:
        node.stop()  # SIGCONT first, in case the test left it paused


@pytest.fixture(scope="session")
def uvicorn_apps(cluster: List[Node], tmp_path_factory: pytest.TempPathFactory) -> Iterator[List[Uvicorn]]:
    """Two uvicorn processes serving tests/apps.py, each beside its own node of the cluster."""
    work = tmp_path_factory.mktemp("uvicorn")
    apps: List[Uvicorn] = []
    try:
        for i, node in enumerate(cluster):
            apps.append(Uvicorn(node.url, work, f"app{i + 1}").start())
        yield apps
    finally:
        for a in reversed(apps):
            a.stop()
