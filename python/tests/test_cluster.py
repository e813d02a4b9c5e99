"""One count per key across the cluster, through two apps each beside its
own node; and the DEGRADED switch."""

from __future__ import annotations

import asyncio
from typing import Callable, List

import httpx

import expect
from apps import make_app
from asgi import served
from nodes import Node, Uvicorn, wait_health


def test_one_count_across_two_apps(cluster: List[Node], fresh_key: Callable[[str], str]) -> None:
    key = fresh_key("free")
    app_a, app_b = make_app(cluster[0].url), make_app(cluster[1].url)

    async def run() -> None:
        async with served(app_a) as a, served(app_b) as b:
            for i in range(20):
                r = await (a, b)[i % 2].get("/v1/echo", headers={"X-API-Key": key})
                expect.admitted(r, "free", limit=20, remaining=19 - i)
            for client in (a, b, a):
                r = await client.get("/v1/echo", headers={"X-API-Key": key})
                expect.limited(r, "free", limit=20)

    asyncio.run(run())
    expect.calls(app_a.state.calls, echo=10)
    expect.calls(app_b.state.calls, echo=10)


def test_one_count_across_two_uvicorn_apps(uvicorn_apps: List[Uvicorn], fresh_key: Callable[[str], str]) -> None:
    """The same over real sockets: two uvicorn processes, each beside its node."""
    key = fresh_key("free")

    async def run() -> None:
        async with httpx.AsyncClient(timeout=5) as client:
            before = [(await client.get(f"{u.url}/count")).json().get("echo", 0) for u in uvicorn_apps]
            for i in range(20):
                r = await client.get(f"{uvicorn_apps[i % 2].url}/v1/echo", headers={"X-API-Key": key})
                expect.admitted(r, "free", limit=20, remaining=19 - i)
            for u in (uvicorn_apps[0], uvicorn_apps[1], uvicorn_apps[0]):
                r = await client.get(f"{u.url}/v1/echo", headers={"X-API-Key": key})
                expect.limited(r, "free", limit=20)
            after = [(await client.get(f"{u.url}/count")).json().get("echo", 0) for u in uvicorn_apps]
            assert [a - b for a, b in zip(after, before)] == [10, 10], f"echo calls {before} -> {after}, want 10 more each"

    asyncio.run(run())


def test_degraded_switch(cluster: List[Node], fresh_key: Callable[[str], str]) -> None:
    free, pro = fresh_key("free"), fresh_key("pro")
    app_a, app_b = make_app(cluster[0].url), make_app(cluster[1].url)

    async def run() -> None:
        async with served(app_a) as a, served(app_b) as b:
            for i in range(2):
                r = await (a, b)[i % 2].get("/v1/echo", headers={"X-API-Key": free})
                expect.admitted(r, "free", limit=2, remaining=1 - i)
            for client in (a, b):
                r = await client.get("/v1/echo", headers={"X-API-Key": free})
                expect.limited(r, "free", limit=2)
            for i in range(100):
                r = await (a, b)[i % 2].get("/v1/echo", headers={"X-API-Key": pro})
                expect.admitted(r, "pro", limit=100, remaining=99 - i)
            r = await b.get("/v1/echo", headers={"X-API-Key": pro})
            expect.limited(r, "pro", limit=100)

            await asyncio.to_thread(cluster[1].set_health, "NORMAL")
            await asyncio.to_thread(wait_health, cluster, "NORMAL")
            # NORMAL again: the free key's 2 hits count against its burst of 20.
            r = await a.get("/v1/echo", headers={"X-API-Key": free})
            expect.admitted(r, "free", limit=20, remaining=17)

    cluster[0].set_health("DEGRADED")
    try:
        wait_health(cluster, "DEGRADED")
        asyncio.run(run())
    finally:
        cluster[1].set_health("NORMAL")
        wait_health(cluster, "NORMAL")
    expect.calls(app_a.state.calls, echo=1 + 50 + 1)
    expect.calls(app_b.state.calls, echo=1 + 50)
