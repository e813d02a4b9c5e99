"""The paid-first queue (queue_wait): at most capacity app calls at once,
the others held in the middleware, the sheddable tiers' behind the others;
a sheddable request still waiting when the node says DEGRADED (in its
answer to a load report) gets 503 shed, one that waits too long 503
queue_timeout."""

from __future__ import annotations

import asyncio
from typing import Callable, List

import pytest

from apps import make_app
from asgi import middleware_of, served, until
from nodes import ADMIN_TOKEN, Node
from tierlimit import TierLimitMiddleware
from tierlimit._queue import SHED, TIMEOUT, SlotQueue


async def settle() -> None:
    """Lets every task that can run, run."""
    for _ in range(5):
        await asyncio.sleep(0)


def test_slot_queue_serves_the_protected_class_first_each_in_order() -> None:
    async def run() -> None:
        q = SlotQueue(1, 60)
        assert await q.enter(False) is None  # the running job
        order: List[str] = []

        async def wait(name: str, sheddable: bool) -> None:
            assert await q.enter(sheddable) is None
            order.append(name)

        tasks = []
        for name, sheddable in (("free-1", True), ("pro-1", False), ("free-2", True), ("ent-1", False)):
            tasks.append(asyncio.create_task(wait(name, sheddable)))
            await settle()
        assert (q.waiting(False), q.waiting(True)) == (2, 2)
        for _ in range(4):
            q.leave()  # the running job ends: its slot goes to the next
            await settle()
        await asyncio.gather(*tasks)
        assert order == ["pro-1", "ent-1", "free-1", "free-2"]
        q.leave()
        assert q.free == 1 and q.waited == 4

    asyncio.run(run())


def test_slot_queue_timeout_shed_and_cancel_hold_no_slot() -> None:
    async def run() -> None:
        q = SlotQueue(1, 0.05)
        assert await q.enter(False) is None
        assert await q.enter(True) == TIMEOUT
        assert q.timed_out == 1

        q.wait = 60
        free = asyncio.create_task(q.enter(True))
        paid = asyncio.create_task(q.enter(False))
        gone = asyncio.create_task(q.enter(False))
        await settle()
        assert q.shed() == 1
        assert await free == SHED
        gone.cancel()  # its client left
        with pytest.raises(asyncio.CancelledError):
            await gone
        assert (q.waiting(False), q.waiting(True)) == (1, 0)
        q.leave()
        assert await paid is None
        q.leave()
        assert q.free == 1, "neither the refused nor the cancelled waiter kept a slot"
        assert q.shed_total == 1

    asyncio.run(run())


def test_queue_options_are_checked() -> None:
    app = lambda scope, receive, send: None  # noqa: E731
    for kwargs, problem in (
        ({"queue_wait": 5}, "queue_wait without capacity"),
        ({"queue_wait": 0, "capacity": 1, "admin_token": "t"}, "queue_wait 0"),
        ({"queue_wait": 3601, "capacity": 1, "admin_token": "t"}, "queue_wait 3601"),
        ({"queue_wait": True, "capacity": 1, "admin_token": "t"}, "queue_wait True"),
        ({"queue_wait": float("nan"), "capacity": 1, "admin_token": "t"}, "queue_wait nan"),
    ):
        with pytest.raises(ValueError, match=problem):
            TierLimitMiddleware(app, **kwargs)


def test_queue_serves_paid_first_and_sheds_free_when_the_cluster_switches(
        lone_node: Node, fresh_key: Callable[[str], str]) -> None:
    """capacity=1: a pro request holds the slot; a free one and then a pro
    one wait. Their load (3 on 1) makes the node go DEGRADED by itself; the
    next report's answer says so, and the waiting free request gets 503
    shed with the node's headers; the pro one runs when the slot frees."""
    app = make_app(lone_node.url, capacity=1, admin_token=ADMIN_TOKEN, report_interval=0.1, queue_wait=60)
    free, pro = {"X-API-Key": fresh_key("free")}, {"X-API-Key": fresh_key("pro")}

    async def run() -> None:
        async with served(app) as a:
            holding = asyncio.create_task(a.get("/v1/hold", headers=pro))
            await until("the pro job runs", lambda: app.state.calls["hold"] == 1)
            mw = middleware_of(app)
            waiting_free = asyncio.create_task(a.get("/v1/echo", headers=free))
            waiting_pro = asyncio.create_task(a.get("/v1/echo", headers=pro))
            await until("two wait", lambda: mw._in_flight == 3)
            assert app.state.calls["echo"] == 0

            r = await asyncio.wait_for(waiting_free, 15)  # the up hold, then a report
            assert r.status_code == 503, r.text
            assert r.json()["error"]["code"] == "shed"
            assert r.headers["retry-after"] == "60", "a window"
            assert r.headers["x-ratelimit-limit"] == "20", "admitted in NORMAL: counted"
            assert not waiting_pro.done() and app.state.calls["echo"] == 0
            assert await asyncio.to_thread(lone_node.health) == "DEGRADED"

            await a.post("/release")
            assert (await holding).status_code == 200
            r = await waiting_pro
            assert r.status_code == 200 and app.state.calls["echo"] == 1, r.text
            assert mw._in_flight == 0
            q = mw._queue
            assert q is not None and (q.shed_total, q.waited, q.free) == (1, 1, 1)

    asyncio.run(run())


def test_queue_refuses_a_wait_over_queue_wait(lone_node: Node, fresh_key: Callable[[str], str]) -> None:
    app = make_app(lone_node.url, capacity=1, admin_token=ADMIN_TOKEN, queue_wait=0.2)
    pro = {"X-API-Key": fresh_key("pro")}

    async def run() -> None:
        async with served(app) as a:
            holding = asyncio.create_task(a.get("/v1/hold", headers=pro))
            await until("the job runs", lambda: app.state.calls["hold"] == 1)
            r = await a.get("/v1/echo", headers=pro)
            assert r.status_code == 503 and r.json()["error"]["code"] == "queue_timeout", r.text
            assert r.headers["retry-after"] == "1"
            assert r.headers["x-ratelimit-remaining"] == "148", "its hit counted"
            await a.post("/release")
            assert (await holding).status_code == 200
            assert middleware_of(app)._queue.free == 1  # type: ignore[union-attr]

    asyncio.run(run())

