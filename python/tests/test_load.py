"""Load reports: the middleware counts the requests the app runs and POSTs
them with its capacity to the node's /system/load; the node's cluster
switches DEGRADED and back by them. Failed reports are logged, never felt
by requests; the reports stop with the lifespan."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Callable, List, Optional

import httpx
import pytest

import expect
from apps import make_app
from asgi import middleware_of, served, until
from nodes import ADMIN_TOKEN, PACKAGE_ROOT, TESTS, Node, Uvicorn, free_port, poll, request
from tierlimit import TierLimitMiddleware


def member_signal(node: Node) -> Optional[float]:
    """The node's own load signal in GET /system/health, or None while it
    has none that is fresh."""
    load = node.health_doc().get("cluster_load")
    if not load or not load.get("members"):
        return None
    member = load["members"][0]
    return member["signal"] if member["fresh"] else None


def app_counts(app: Uvicorn) -> dict:
    got = request(app.port, "GET", "/count")
    assert got is not None and got[0] == 200, got
    return json.loads(got[2])


def tierlimit_records(caplog: pytest.LogCaptureFixture, level: int) -> List[str]:
    return [r.getMessage() for r in caplog.records if r.name == "tierlimit" and r.levelno == level]


def test_reports_switch_the_cluster(node_binary: Path, tiers_file: Path, tmp_path: Path,
                                    fresh_key: Callable[[str], str]) -> None:
    """uvicorn with capacity=2 holding 3 requests: the node's signal is 1.5
    and it goes DEGRADED by itself; once they end, NORMAL again. After the
    app stops, its load turns unknown."""
    node = Node(node_binary, tiers_file, "busy", tmp_path, flags=("-auto-up-hold", "500ms", "-auto-down-hold", "1s"))
    app = Uvicorn("", tmp_path, "busy-app", env={"TIERLIMIT_CAPACITY": "2", "TIERLIMIT_ADMIN_TOKEN": ADMIN_TOKEN})
    headers = {"X-API-Key": fresh_key("enterprise")}  # DEGRADED keeps its limit: no request is refused

    async def hold_three() -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            held = [asyncio.create_task(client.get(f"{app.url}/v1/hold", headers=headers)) for _ in range(2)]
            # A third from a client that leaves while its request is held:
            # the app call goes on, and counts, until it returns.
            reader, writer = await asyncio.open_connection("127.0.0.1", app.port)
            writer.write(f"GET /v1/hold HTTP/1.1\r\nHost: app\r\nX-API-Key: {headers['X-API-Key']}\r\n\r\n".encode())
            await writer.drain()
            await asyncio.to_thread(poll, "3 requests held", lambda: app_counts(app).get("hold") == 3)
            writer.close()

            await asyncio.to_thread(poll, "the node's signal 1.5", lambda: member_signal(node) == 1.5)
            await asyncio.to_thread(poll, "DEGRADED by itself", lambda: (
                lambda doc: doc["status"] == "DEGRADED" and doc["mode"] == "auto")(node.health_doc()))

            r = await client.post(f"{app.url}/release")
            assert r.status_code == 200, r.text
            for r in await asyncio.gather(*held):
                assert r.status_code == 200 and r.json() == {"held": True}, r.text
                assert r.headers["x-ratelimit-limit"] == "1500", dict(r.headers)  # admitted in NORMAL
            await asyncio.to_thread(poll, "the 3 app calls returned", lambda: app_counts(app).get("hold_done") == 3)

    try:
        node.start()
        app.node_url = node.url  # its ports are known now
        app.start()
        # The reports began with the app: an idle instance counts 0, not unknown.
        poll("the node's signal 0", lambda: member_signal(node) == 0.0)
        doc = node.health_doc()
        assert (doc["status"], doc["mode"]) == ("NORMAL", "auto"), doc

        asyncio.run(hold_three())

        poll("the node's signal back to 0", lambda: member_signal(node) == 0.0)
        poll("NORMAL by itself", lambda: (lambda doc: doc["status"] == "NORMAL" and doc["mode"] == "auto")(
            node.health_doc()))
        doc = node.health_doc()
        assert doc["cluster_load"]["members"][0]["name"] == "busy", doc

        app.stop()
        # No more reports: 2 s after the last one the node's load is unknown.
        poll("the node's load unknown", lambda: member_signal(node) is None)
    finally:
        app.stop()
        node.stop()
    log = app.log_path.read_text()
    for bad in ("Traceback", "Task was destroyed", "tierlimit"):
        assert bad not in log, f"uvicorn's log has {bad!r}:\n{log}"
    assert "Application shutdown complete" in log, log


def test_what_counts_in_flight(lone_node: Node, fresh_key: Callable[[str], str]) -> None:
    """Requests the app runs count until its call returns (also when it
    raises or is cancelled), failed-open ones too; refused ones never."""
    app = make_app(lone_node.url)
    dead = free_port()
    open_app = make_app(f"http://127.0.0.1:{dead}", fail_open=True)
    closed_app = make_app(f"http://127.0.0.1:{dead}", fail_open=False)
    gpu, pro = {"X-API-Key": fresh_key("gpu")}, {"X-API-Key": fresh_key("pro")}

    async def run() -> None:
        async with served(app) as a, served(open_app) as o, served(closed_app) as c:
            expect.admitted(await a.get("/v1/echo", headers=pro), "pro", 150, 149)
            mw = middleware_of(app)
            assert mw._in_flight == 0 and mw._reporter is None, "no capacity: counts, no reports"

            # A gpu job (its slot reserved, settled after) and a pro request, held.
            held = [asyncio.create_task(a.get("/v1/hold", headers=h)) for h in (gpu, pro)]
            await until("2 held", lambda: app.state.calls["hold"] == 2)
            assert mw._in_flight == 2
            # Refused: by the node (429, the gpu tier's one job at once; an
            # unknown key's 401), or here (no key): not counted.
            r = await a.get("/v1/hold", headers=gpu)
            assert r.status_code == 429 and r.json()["error"]["limit"] == "concurrency", r.text
            assert (await a.get("/v1/hold", headers={"X-API-Key": "no-such-key"})).status_code == 401
            assert (await a.get("/v1/hold")).status_code == 401
            expect.unchecked(await a.get("/count"))  # excluded: not counted either
            assert mw._in_flight == 2
            await a.post("/release")
            for r in await asyncio.gather(*held):
                assert r.status_code == 200, r.text
            assert mw._in_flight == 0
            r = await a.get("/v1/echo", headers=gpu)  # the first job's settle freed its slot
            assert r.status_code == 200, r.text

            # The app raises: counted down.
            with pytest.raises(RuntimeError, match="the app failed"):
                await a.get("/v1/fail", headers=pro)
            assert mw._in_flight == 0
            # The request is cancelled (a server may cancel on disconnect): counted down.
            task = asyncio.create_task(a.get("/v1/hold", headers=pro))
            await until("held", lambda: mw._in_flight == 1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert mw._in_flight == 0

            # Failed open: the app runs it, so it counts; failed closed (503): not.
            task = asyncio.create_task(o.get("/v1/hold", headers=pro))
            await until("failed open, held", lambda: open_app.state.calls["hold"] == 1)
            mw_open = middleware_of(open_app)
            assert mw_open._in_flight == 1
            await o.post("/release")
            expect.unchecked(await task)
            assert mw_open._in_flight == 0
            r = await c.get("/v1/hold", headers=pro)
            assert r.status_code == 503, r.text
            assert middleware_of(closed_app)._in_flight == 0

    asyncio.run(run())
    expect.calls(closed_app.state.calls, hold=0)


def test_reports_start_with_the_lifespan_and_stop_with_it(lone_node: Node, fresh_key: Callable[[str], str]) -> None:
    app = make_app(lone_node.url, capacity=4, admin_token=ADMIN_TOKEN, report_interval=0.1)
    key = {"X-API-Key": fresh_key("pro")}

    async def run() -> None:
        mw: Optional[TierLimitMiddleware] = None
        async with served(app) as a:
            # Before any request: reporting since the lifespan startup.
            await asyncio.to_thread(poll, "the node's signal 0", lambda: member_signal(lone_node) == 0.0)
            held = [asyncio.create_task(a.get("/v1/hold", headers=key)) for _ in range(2)]
            await asyncio.to_thread(poll, "the node's signal 0.5", lambda: member_signal(lone_node) == 0.5)
            await a.post("/release")
            await asyncio.gather(*held)
            mw = middleware_of(app)
            reporter = mw._reporter
            assert reporter is not None and reporter.running
            # Between reports only a timer is pending: no task to be destroyed
            # if the loop were closed without cancelling its tasks.
            await until("no report task", lambda: not any(
                getattr(t.get_coro(), "__qualname__", "") == "LoadReporter._report" for t in asyncio.all_tasks()))
            sent = reporter.sent
            assert sent >= 2 and reporter.failed == 0, (reporter.sent, reporter.failed)
        assert not reporter.running and reporter._client is None and reporter._timer is None
        assert reporter._task is None, "lifespan.shutdown.complete left a report under way"
        assert asyncio.all_tasks() == {asyncio.current_task()}
        await asyncio.sleep(0.3)
        assert reporter.sent == sent, "a report after the lifespan shutdown"

    asyncio.run(run())
    # Stopped: 2 s after the last report the node counts the load unknown.
    poll("the node's load unknown", lambda: member_signal(lone_node) is None)


def test_loop_ends_without_a_lifespan(lone_node: Node, tmp_path: Path, fresh_key: Callable[[str], str]) -> None:
    """Started by a request, without a lifespan: a loop that then ends (as
    asyncio.run does, or closed without cancelling its tasks) neither waits
    for the reports nor warns of a task destroyed while pending."""
    script = tmp_path / "no_lifespan.py"
    script.write_text(textwrap.dedent(f"""
        import asyncio, gc, sys, httpx
        from apps import make_app
        from asgi import middleware_of

        async def main():
            app = make_app({lone_node.url!r}, capacity=2, admin_token={ADMIN_TOKEN!r}, report_interval=0.05)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as a:
                r = await a.get("/v1/echo", headers={{"X-API-Key": {fresh_key("pro")!r}}})
                assert r.status_code == 200, r.text
            reporter = middleware_of(app)._reporter
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while reporter.sent < 3 or reporter._task is not None:
                assert loop.time() < deadline, (reporter.sent, reporter.failed)
                await asyncio.sleep(0.005)
            return app

        mode = sys.argv[1]
        if mode == "run":
            asyncio.run(main())
        else:  # an old-style loop: closed without cancelling anything
            loop = asyncio.new_event_loop()
            app = loop.run_until_complete(main())
            loop.close()
            middleware_of(app).close()  # after its loop: lets go, does not raise
            del app, loop
        gc.collect()
        print("ended")
    """))
    env = {"PYTHONPATH": f"{PACKAGE_ROOT}:{TESTS}", "PATH": "/usr/bin:/bin"}
    for mode in ("run", "closed"):
        done = subprocess.run([sys.executable, str(script), mode], capture_output=True, text=True, timeout=30,
                              env=env, cwd=str(tmp_path))
        assert done.returncode == 0 and done.stdout.strip() == "ended", f"{mode}: {done.stdout}{done.stderr}"
        assert "Task was destroyed" not in done.stderr and "Traceback" not in done.stderr, f"{mode}: {done.stderr}"


def test_wrong_admin_token(lone_node: Node, fresh_key: Callable[[str], str], caplog: pytest.LogCaptureFixture) -> None:
    """The node refuses every report: one ERROR says what to fix, and the
    requests go on as ever."""
    caplog.set_level(logging.INFO, logger="tierlimit")
    key = {"X-API-Key": fresh_key("free")}
    app = make_app(lone_node.url, capacity=2, admin_token="not-the-token", report_interval=0.05)

    async def run() -> None:
        async with served(app) as a:
            for i in range(5):
                expect.admitted(await a.get("/v1/echo", headers=key), "free", 20, 19 - i)
            reporter = middleware_of(app)._reporter
            assert reporter is not None
            await until("10 reports refused", lambda: reporter.failed >= 10)
            expect.admitted(await a.get("/v1/echo", headers=key), "free", 20, 14)
            assert reporter.sent == 0

    asyncio.run(run())
    errors = tierlimit_records(caplog, logging.ERROR)
    assert len(errors) == 1, f"ERRORs = {errors}, want 1"
    assert lone_node.url in errors[0] and "401" in errors[0], errors[0]
    assert "admin_token must be the node's admin token" in errors[0], errors[0]
    assert tierlimit_records(caplog, logging.WARNING) == []
    assert member_signal(lone_node) is None, "the node took a report"
    expect.calls(app.state.calls, echo=6)


def test_node_down_then_back(lone_node: Node, fresh_key: Callable[[str], str],
                             caplog: pytest.LogCaptureFixture) -> None:
    """Reports to a node that is down fail with one WARNING (beside the
    checks' own), and resume, with one INFO, when it is back."""
    caplog.set_level(logging.INFO, logger="tierlimit")
    key = {"X-API-Key": fresh_key("free")}
    app = make_app(lone_node.url, capacity=2, admin_token=ADMIN_TOKEN, report_interval=0.05)

    async def run() -> None:
        async with served(app) as a:
            expect.admitted(await a.get("/v1/echo", headers=key), "free", 20, 19)
            reporter = middleware_of(app)._reporter
            assert reporter is not None
            await until("a report taken", lambda: reporter.sent >= 1)
            await asyncio.to_thread(lone_node.stop)
            failed = reporter.failed
            await until("10 reports failed", lambda: reporter.failed >= failed + 10)
            expect.unchecked(await a.get("/v1/echo", headers=key))  # fails open, as ever
            await asyncio.to_thread(lone_node.start)
            sent = reporter.sent
            await until("reports taken again", lambda: reporter.sent > sent)

    asyncio.run(run())
    warnings = tierlimit_records(caplog, logging.WARNING)
    reports = [w for w in warnings if "could not report the load" in w]
    assert len(reports) == 1, f"WARNINGs = {warnings}, want one about the reports"
    assert "unknown 2 s after the last report" in reports[0], reports[0]
    assert len(warnings) == 2, f"WARNINGs = {warnings}, want one about the reports and one about the checks"
    assert any("load reports reach the node" in i and "again" in i for i in tierlimit_records(caplog, logging.INFO))
    assert tierlimit_records(caplog, logging.ERROR) == []


@pytest.mark.parametrize("kwargs,problem", [
    ({"capacity": 0, "admin_token": "t"}, "capacity 0: want the jobs the app runs at once"),
    ({"capacity": -1, "admin_token": "t"}, "whole number from 1 to 1,000,000"),
    ({"capacity": 1_000_001, "admin_token": "t"}, "whole number from 1"),
    ({"capacity": 2.5, "admin_token": "t"}, "capacity 2.5"),
    ({"capacity": "4", "admin_token": "t"}, "capacity '4'"),
    ({"capacity": True, "admin_token": "t"}, "capacity True"),
    ({"capacity": 4}, "capacity without admin_token"),
    ({"admin_token": "t"}, "admin_token without capacity"),
    ({"capacity": 4, "admin_token": ""}, "non-empty string"),
    ({"capacity": 4, "admin_token": b"t"}, "non-empty string"),
    ({"capacity": 4, "admin_token": "t\r\nX-Evil: 1"}, "printable ASCII"),
    ({"capacity": 4, "admin_token": " t"}, "without spaces at either end"),
    ({"capacity": 4, "admin_token": "t" * 1018}, "more than the node reads"),
    ({"capacity": 4, "admin_token": "t", "report_interval": 0}, "report_interval 0: want more than 0 and less than 2"),
    ({"capacity": 4, "admin_token": "t", "report_interval": -0.5}, "report_interval -0.5"),
    ({"capacity": 4, "admin_token": "t", "report_interval": 2}, "counts a report for 2 s"),
    ({"capacity": 4, "admin_token": "t", "report_interval": float("nan")}, "report_interval nan"),
    ({"capacity": 4, "admin_token": "t", "report_interval": "0.5"}, "report_interval '0.5'"),
])
def test_bad_report_options(kwargs: dict, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        TierLimitMiddleware(make_app, **kwargs)


def test_report_options_taken() -> None:
    mw = TierLimitMiddleware(make_app, capacity=1_000_000, admin_token="a token", report_interval=1.9)
    assert mw._reporter is not None and (mw.capacity, mw.report_interval) == (1_000_000, 1.9)
    assert TierLimitMiddleware(make_app, report_interval=0.01)._reporter is None  # no capacity: no reports
