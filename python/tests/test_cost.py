"""A tier that limits cost and concurrency, through the middleware: the
estimate reserved at the node, settled at the cost the app reports, given
back on a 5xx; one job at once."""

from __future__ import annotations

import asyncio
import json
from typing import Callable, List

import httpx

from apps import make_app
from asgi import served
from nodes import Node


def cost_left(r: httpx.Response) -> int:
    """What the RateLimit header says is left of the gpu tier's cost."""
    for item in r.headers["ratelimit"].split(","):
        name, _, params = item.strip().partition(";")
        if name == '"gpu-cost"':
            return int(dict(p.split("=", 1) for p in params.split(";"))["r"])
    raise AssertionError(f"no gpu-cost in RateLimit: {r.headers['ratelimit']}")


def test_cost_is_reserved_then_settled(cluster: List[Node], fresh_key: Callable[[str], str]) -> None:
    key = fresh_key("gpu")
    app = make_app(cluster[0].url)

    async def run() -> None:
        async with served(app) as a:
            h = {"X-API-Key": key}
            r = await a.post("/v1/transcribe?cost=30", headers={**h, "Tierlimit-Cost": "100"})
            assert r.status_code == 200, r.text
            assert cost_left(r) == 900, "100 reserved at admission"
            assert "tierlimit-cost" not in r.headers, "the app's report is for the node"
            assert "tierlimit-reservation" not in r.headers
            r = await a.post("/v1/transcribe", headers=h)
            assert r.status_code == 200
            assert cost_left(r) == 910, "settled at 30, then the default estimate of 60 reserved"
            r = await a.post("/v1/transcribe?status=500", headers={**h, "Tierlimit-Cost": "500"})
            assert r.status_code == 500
            # The refund reaches the key's owner in the background: a
            # request of no cost reads what is left until it has.
            for _ in range(50):
                r = await a.post("/v1/transcribe?cost=0", headers={**h, "Tierlimit-Cost": "0"})
                assert r.status_code == 200
                if cost_left(r) == 910:
                    break
                await asyncio.sleep(0.05)
            assert cost_left(r) == 910, "the 500's reservation was given back; the 60 stands"
            r = await a.post("/v1/transcribe?cost=0", headers={**h, "Tierlimit-Cost": "911"})
            assert r.status_code == 429
            assert json.loads(r.text)["error"]["limit"] == "cost"
            r = await a.post("/v1/transcribe?cost=0", headers={**h, "Tierlimit-Cost": "910"})
            assert r.status_code == 200
            r = await a.post("/v1/transcribe", headers={**h, "Tierlimit-Cost": "ten"})
            assert r.status_code == 400
            assert json.loads(r.text)["error"]["code"] == "invalid_cost"

    asyncio.run(run())


def test_one_job_at_once(cluster: List[Node], fresh_key: Callable[[str], str]) -> None:
    key = fresh_key("gpu")
    app = make_app(cluster[0].url)

    async def run() -> None:
        async with served(app) as a:
            h = {"X-API-Key": key, "Tierlimit-Cost": "1"}
            slow = asyncio.create_task(a.post("/v1/transcribe?work=1.0&cost=1", headers=h))
            for _ in range(100):  # until the slow job holds the slot
                await asyncio.sleep(0.02)
                if app.state.calls["transcribe"] == 1:
                    break
            r = await a.post("/v1/transcribe?cost=1", headers=h)
            assert r.status_code == 429, r.text
            assert json.loads(r.text)["error"]["limit"] == "concurrency"
            assert r.headers["retry-after"] == "1"
            assert (await slow).status_code == 200
            r = await a.post("/v1/transcribe?cost=1", headers=h)
            assert r.status_code == 200, "the slow job's settle freed the slot"

    asyncio.run(run())
