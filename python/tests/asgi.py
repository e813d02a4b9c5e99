"""Driving ASGI apps in tests: a lifespan around httpx.ASGITransport, and
hand-made WebSocket connects."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable, Dict, List, Optional

import httpx

from tierlimit import TierLimitMiddleware


@asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    """Runs app's lifespan startup before the block and shutdown after it,
    as a server would; httpx.ASGITransport runs none."""
    to_app: asyncio.Queue = asyncio.Queue()
    from_app: asyncio.Queue = asyncio.Queue()
    task = asyncio.ensure_future(app({"type": "lifespan", "asgi": {"version": "3.0"}}, to_app.get, from_app.put))
    await to_app.put({"type": "lifespan.startup"})
    got = await asyncio.wait_for(from_app.get(), 5)
    assert got["type"] == "lifespan.startup.complete", got
    try:
        yield
    finally:
        await to_app.put({"type": "lifespan.shutdown"})
        got = await asyncio.wait_for(from_app.get(), 5)
        assert got["type"] == "lifespan.shutdown.complete", got
        await asyncio.wait_for(task, 5)


@asynccontextmanager
async def served(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on app through httpx.ASGITransport, inside its lifespan."""
    async with lifespan(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:
            yield client


async def until(what: str, check: Callable[[], object], timeout: float = 10.0) -> None:
    """Awaits until check() is true, in the test's own loop; fails the test
    after timeout seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not after {timeout} s")
        await asyncio.sleep(0.01)


def middleware_of(app: Any) -> TierLimitMiddleware:
    """The TierLimitMiddleware in a Starlette app's built middleware stack."""
    layer = app.middleware_stack
    while layer is not None:
        if isinstance(layer, TierLimitMiddleware):
            return layer
        layer = getattr(layer, "app", None)
    raise AssertionError("no TierLimitMiddleware in the app's middleware stack (has it served a request yet?)")


async def websocket_connect(app: Any, key: Optional[str], extensions: Optional[Dict[str, Any]] = None,
                            path: str = "/v1/ws") -> List[Dict[str, Any]]:
    """Opens a WebSocket to app as a server would, and returns what the app
    sent until it accepted and closed, refused, or answered over HTTP."""
    headers = [(b"host", b"app"), (b"connection", b"upgrade"), (b"upgrade", b"websocket"),
               (b"sec-websocket-version", b"13"), (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ==")]
    if key is not None:
        headers.append((b"x-api-key", key.encode()))
    scope = {"type": "websocket", "asgi": {"version": "3.0"}, "http_version": "1.1", "scheme": "ws",
             "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
             "headers": headers, "client": ("127.0.0.1", 1), "server": ("app", 80), "subprotocols": []}
    if extensions is not None:
        scope["extensions"] = extensions
    inbox: asyncio.Queue = asyncio.Queue()
    await inbox.put({"type": "websocket.connect"})
    sent: List[Dict[str, Any]] = []

    async def send(message: Dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "websocket.close":
            await inbox.put({"type": "websocket.disconnect", "code": message.get("code", 1000)})

    await asyncio.wait_for(app(scope, inbox.get, send), 5)
    return sent
