"""The app under test: FastAPI with TierLimitMiddleware, counting the calls
each endpoint gets. uvicorn runs it with --factory apps:app_from_env."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections import Counter
from typing import Iterable, Optional

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import Response, StreamingResponse

from tierlimit import TierLimitMiddleware

# Not checked, so a test can read the counts, let held requests go, and a
# readiness probe needs no key.
EXCLUDE = ("/count", "/healthz", "/release")


# A check's timeout well above the default 0.1 s, so that a busy test machine
# cannot turn an exact count into a failed-open request; the tests of the
# timeout itself set their own.
TIMEOUT = 1.0


def make_app(node: str, *, fail_open: bool = True, timeout: float = TIMEOUT, exclude: Iterable[str] = EXCLUDE,
             capacity: Optional[int] = None, admin_token: Optional[str] = None,
             report_interval: float = 0.5, queue_wait: Optional[float] = None) -> FastAPI:
    app = FastAPI()
    calls: Counter = Counter()
    app.state.calls = calls
    app.add_middleware(TierLimitMiddleware, node=node, fail_open=fail_open, timeout=timeout, exclude=exclude,
                       capacity=capacity, admin_token=admin_token, report_interval=report_interval,
                       queue_wait=queue_wait)
    # The gate GET /v1/hold waits at, until POST /release opens it. Made in
    # the serving loop (an asyncio.Event of Python 3.9 binds to a loop).
    gate = []

    def current_gate() -> asyncio.Event:
        if not gate:
            gate.append(asyncio.Event())
        return gate[0]

    @app.get("/v1/echo")
    async def echo() -> dict:
        calls["echo"] += 1
        return {"ok": True}

    @app.post("/v1/upload")
    async def upload(request: Request) -> dict:
        calls["upload"] += 1
        body = await request.body()
        return {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}

    @app.get("/v1/stream")
    async def stream() -> StreamingResponse:
        calls["stream"] += 1

        async def parts():
            for i in range(3):
                yield f"part {i}\n".encode()

        # The app's own X-Ratelimit-Limit, which the node's must replace.
        return StreamingResponse(parts(), media_type="text/plain", headers={"X-RateLimit-Limit": "app"})

    @app.websocket("/v1/ws")
    async def ws(websocket: WebSocket) -> None:
        calls["ws"] += 1
        await websocket.accept()
        await websocket.send_text("hello")
        await websocket.close()

    @app.post("/v1/transcribe")
    async def transcribe(work: float = 0.0, cost: int = -1, status: int = 200) -> Response:
        """A GPU job: holds the request work seconds, reports cost (if not
        negative) in its Tierlimit-Cost response header, answers status."""
        calls["transcribe"] += 1
        if work > 0:
            await asyncio.sleep(work)
        headers = {"Tierlimit-Cost": str(cost)} if cost >= 0 else {}
        return Response(content=b'{"text":"..."}', status_code=status, media_type="application/json", headers=headers)

    @app.get("/v1/hold")
    async def hold() -> dict:
        """Holds the request until POST /release."""
        calls["hold"] += 1
        try:
            await current_gate().wait()
        finally:
            calls["hold_done"] += 1
        return {"held": True}

    @app.get("/v1/fail")
    async def fail() -> dict:
        calls["fail"] += 1
        raise RuntimeError("the app failed")

    @app.post("/release")
    async def release() -> dict:
        """Lets every request held at GET /v1/hold go."""
        if gate:
            gate.pop().set()
        return {"released": True}

    @app.get("/count")
    async def count() -> dict:
        return dict(calls)

    @app.get("/healthz")
    async def healthz() -> dict:
        calls["healthz"] += 1
        return {"ok": True}

    @app.get("/healthz/live")  # excluded: under /healthz
    async def healthz_live() -> dict:
        calls["healthz"] += 1
        return {"ok": True}

    @app.get("/healthzz")  # checked: "/healthz" is only a string prefix of it
    async def healthzz() -> dict:
        calls["healthzz"] += 1
        return {"ok": True}

    return app


def app_from_env() -> FastAPI:
    env = os.environ
    capacity = env.get("TIERLIMIT_CAPACITY")
    return make_app(env["TIERLIMIT_NODE"], capacity=int(capacity) if capacity else None,
                    admin_token=env.get("TIERLIMIT_ADMIN_TOKEN") or None,
                    report_interval=float(env.get("TIERLIMIT_REPORT_INTERVAL") or 0.5))
