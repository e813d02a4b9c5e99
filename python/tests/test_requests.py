"""What one request gets: 401s, headers on streamed answers, bodies,
WebSockets, excluded paths, the lifespan, Starlette."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
from typing import Callable, List, Optional, Tuple

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import expect
from apps import make_app
from asgi import lifespan, middleware_of, served, websocket_connect
from nodes import Node, Uvicorn, free_port
from tierlimit import TierLimitMiddleware
from tierlimit._node import parse_answer


def ask_node_raw(node: Node, header_lines: List[bytes]) -> Tuple[int, bytes]:
    """Sends /authorize to the node with exactly these header lines; its status and body."""
    with socket.create_connection(("127.0.0.1", node.http_port), timeout=5) as s:
        s.sendall(b"GET /authorize HTTP/1.1\r\nHost: n\r\n" + b"".join(line + b"\r\n" for line in header_lines) + b"\r\n")
        buf = b""
        while True:
            data = s.recv(65536)
            assert data, f"the node closed after {buf!r}"
            buf += data
            parsed = parse_answer(buf)
            if parsed is not None:
                return parsed[0].status, parsed[0].body


# (case, X-API-Key values, whether the node itself would accept the request's
# bytes, so its own answer can be compared, the message)
LOCAL_401 = [
    ("missing", [], True, "missing X-API-Key header"),
    ("empty", [b""], True, "X-API-Key: empty API key"),
    ("space inside", [b"free-t1 x"], True,
     "X-API-Key: API key has byte 0x20 at 7; want printable ASCII without spaces"),
    ("tab inside", [b"ab\tc"], True, "X-API-Key: API key has byte 0x9 at 2; want printable ASCII without spaces"),
    ("non-ASCII", ["clé".encode()], True, "X-API-Key: API key has byte 0xc3 at 2; want printable ASCII without spaces"),
    ("too long", [b"k" * 257], True, "X-API-Key: API key is 257 bytes, longer than 256"),
    ("control byte", [b"a\x01b"], False, "X-API-Key: API key has byte 0x1 at 1; want printable ASCII without spaces"),
    ("DEL", [b"a\x7f"], False, "X-API-Key: API key has byte 0x7f at 1; want printable ASCII without spaces"),
    ("CR LF smuggling", [b"k\r\nX-API-Key: free-t2"], False,
     "X-API-Key: API key has byte 0xd at 1; want printable ASCII without spaces"),
    ("two, one bad", [b"ok-key", b"b d"], True, "more than one X-API-Key header"),
]


@pytest.mark.parametrize("case,values,node_parses,message", LOCAL_401, ids=[c[0] for c in LOCAL_401])
def test_401_decided_here(cluster: List[Node], case: str, values: List[bytes], node_parses: bool, message: str) -> None:
    """Keys the node would refuse unseen get its 401 from the middleware,
    word for word, without asking it: a middleware whose node is down and
    that fails closed still answers 401, not 503."""
    app = make_app(cluster[0].url)
    nowhere = make_app(f"http://127.0.0.1:{free_port()}", fail_open=False)
    headers = [("X-API-Key", v) for v in values]

    async def run() -> None:
        async with served(app) as a, served(nowhere) as n:
            for client in (a, n):
                r = await client.get("/v1/echo", headers=headers)
                expect.error(r, 401, "invalid_api_key", message)

    asyncio.run(run())
    expect.calls(app.state.calls, echo=0)
    expect.calls(nowhere.state.calls, echo=0)
    if node_parses:
        status, body = ask_node_raw(cluster[0], [b"X-API-Key: " + v for v in values])
        want = json.dumps({"error": {"code": "invalid_api_key", "message": message}}, separators=(",", ":"))
        assert (status, body) == (401, want.encode() + b"\n"), "the node's own answer differs from ours"


def test_401_from_the_node(cluster: List[Node], fresh_key: Callable[[str], str]) -> None:
    """An unknown key, and two valid keys at once, are the node's to refuse."""
    app = make_app(cluster[1].url)
    k1, k2 = fresh_key("free"), fresh_key("free")

    async def run() -> None:
        async with served(app) as a:
            r = await a.get("/v1/echo", headers={"X-API-Key": "no-such-key"})
            expect.error(r, 401, "invalid_api_key", "unknown API key")
            for pair in ([k1, k2], [k1, k1]):
                r = await a.get("/v1/echo", headers=[("X-API-Key", k) for k in pair])
                expect.error(r, 401, "invalid_api_key", "more than one X-API-Key header")
            # Neither key was counted.
            expect.admitted(await a.get("/v1/echo", headers={"X-API-Key": k1}), "free", 20, 19)

    asyncio.run(run())
    expect.calls(app.state.calls, echo=1)


def test_streaming_response_and_request_body(cluster: List[Node], fresh_key: Callable[[str], str]) -> None:
    key = fresh_key("enterprise")
    app = make_app(cluster[0].url)
    body = os.urandom(3 * 1024 * 1024 + 17)

    async def run() -> None:
        async with served(app) as a:
            r = await a.get("/v1/stream", headers={"X-API-Key": key})
            expect.admitted(r, "enterprise", 1500, 1499)  # the app's own X-Ratelimit-Limit replaced
            assert r.text == "part 0\npart 1\npart 2\n"
            assert r.headers["content-type"].startswith("text/plain")

            async def chunks():
                for i in range(0, len(body), 65536):
                    yield body[i:i + 65536]

            r = await a.post("/v1/upload", headers={"X-API-Key": key}, content=chunks())
            expect.admitted(r, "enterprise", 1500, 1498)
            assert r.json() == {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}

    asyncio.run(run())
    expect.calls(app.state.calls, stream=1, upload=1)


def test_request_body_under_uvicorn(uvicorn_apps: List[Uvicorn], fresh_key: Callable[[str], str]) -> None:
    key = fresh_key("enterprise")
    body = os.urandom(2 * 1024 * 1024 + 5)

    async def run() -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            r = await client.post(f"{uvicorn_apps[1].url}/v1/upload", headers={"X-API-Key": key}, content=body)
            expect.admitted(r, "enterprise", 1500, 1499)
            assert r.json() == {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}
            r = await client.get(f"{uvicorn_apps[0].url}/v1/stream", headers={"X-API-Key": key})
            expect.admitted(r, "enterprise", 1500, 1498)
            assert r.text == "part 0\npart 1\npart 2\n"

    asyncio.run(run())


def test_refused_request_body_is_not_read(cluster: List[Node], fresh_key: Callable[[str], str]) -> None:
    key = fresh_key("free")
    app = make_app(cluster[0].url, fail_open=False)

    async def run() -> None:
        async with served(app) as a:
            for i in range(20):
                expect.admitted(await a.get("/v1/echo", headers={"X-API-Key": key}), "free", 20, 19 - i)
            # receive() that fails the test if the middleware reads the body.
            scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                     "scheme": "http", "path": "/v1/upload", "raw_path": b"/v1/upload", "root_path": "",
                     "query_string": b"", "headers": [(b"host", b"app"), (b"x-api-key", key.encode())],
                     "client": ("127.0.0.1", 1), "server": ("app", 80)}
            sent = []

            async def receive():
                raise AssertionError("the middleware read the body of a refused request")

            async def send(message):
                sent.append(message)

            await app(scope, receive, send)
            assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"], sent
            assert sent[0]["status"] == 429, sent
            assert json.loads(sent[1]["body"])["error"]["code"] == "rate_limited"

    asyncio.run(run())
    expect.calls(app.state.calls, echo=20, upload=0)


def _start(sent):
    return [m for m in sent if m["type"] == "websocket.http.response.start"][0]


def test_websocket(cluster: List[Node], fresh_key: Callable[[str], str]) -> None:
    key = fresh_key("free")
    app = make_app(cluster[0].url)
    closed = make_app(f"http://127.0.0.1:{free_port()}", fail_open=False)
    ext = {"websocket.http.response": {}}

    async def run() -> None:
        async with lifespan(app), lifespan(closed):
            for i in range(20):  # admitted: the app accepts, with or without the extension
                sent = await websocket_connect(app, key, extensions=ext if i % 2 else None)
                assert [m["type"] for m in sent] == ["websocket.accept", "websocket.send", "websocket.close"], sent
            # Refused, with the extension: the node's 429 as it is.
            sent = await websocket_connect(app, key, extensions=ext)
            assert [m["type"] for m in sent] == ["websocket.http.response.start", "websocket.http.response.body"], sent
            start = _start(sent)
            headers = dict(start["headers"])
            assert start["status"] == 429 and headers[b"x-ratelimit-remaining"] == b"0", start
            assert headers[b"content-type"] == b"application/json" and b"retry-after" in headers, start
            assert json.loads(sent[1]["body"])["error"]["code"] == "rate_limited"
            assert headers[b"content-length"] == str(len(sent[1]["body"])).encode()
            # Refused without it: closed before accept (uvicorn answers 403).
            assert await websocket_connect(app, key) == [{"type": "websocket.close", "code": 1008}]
            assert await websocket_connect(app, None) == [{"type": "websocket.close", "code": 1008}]
            sent = await websocket_connect(app, None, extensions=ext)
            assert _start(sent)["status"] == 401
            assert json.loads(sent[1]["body"]) == {"error": {"code": "invalid_api_key", "message": "missing X-API-Key header"}}
            # Fail closed: 503 with the extension, else close 1013 (try again later).
            sent = await websocket_connect(closed, key, extensions=ext)
            assert _start(sent)["status"] == 503 and dict(_start(sent)["headers"])[b"retry-after"] == b"1"
            assert await websocket_connect(closed, key) == [{"type": "websocket.close", "code": 1013}]

    asyncio.run(run())
    expect.calls(app.state.calls, ws=20)
    expect.calls(closed.state.calls, ws=0)


async def _ws_handshake(port: int, key: Optional[str]) -> Tuple[int, bytes]:
    """A WebSocket handshake to uvicorn; its status and the first frame's bytes if it was 101."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            b"GET /v1/ws HTTP/1.1\r\nHost: app\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            + (f"X-API-Key: {key}\r\n".encode() if key else b"") + b"\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        rest = b""
        if head.startswith(b"HTTP/1.1 101"):
            rest = await asyncio.wait_for(reader.readexactly(7), 5)
        return int(head.split(b" ", 2)[1]), rest
    finally:
        writer.close()


def test_websocket_under_uvicorn(uvicorn_apps: List[Uvicorn], fresh_key: Callable[[str], str]) -> None:
    key = fresh_key("free")

    async def run() -> None:
        for i in range(20):
            status, frame = await _ws_handshake(uvicorn_apps[i % 2].port, key)
            assert (status, frame) == (101, b"\x81\x05hello"), f"connect {i + 1}: {status} {frame!r}, want 101 and hello"
        for u in uvicorn_apps:
            assert await _ws_handshake(u.port, key) == (403, b""), "connect 21: want 403"
        assert await _ws_handshake(uvicorn_apps[0].port, None) == (403, b""), "no key: want 403"

    asyncio.run(run())


def test_excluded_paths_are_not_counted(cluster: List[Node], fresh_key: Callable[[str], str]) -> None:
    key = fresh_key("free")
    app = make_app(cluster[0].url, exclude=("/healthz", "/count"))
    dead = make_app(f"http://127.0.0.1:{free_port()}", fail_open=False, exclude=("/healthz",))

    async def run() -> None:
        async with served(app) as a, served(dead) as d:
            for _ in range(25):
                expect.unchecked(await a.get("/healthz", headers={"X-API-Key": key}))
            expect.unchecked(await a.get("/healthz"))  # no key needed either
            expect.unchecked(await d.get("/healthz"))  # nor the node
            expect.unchecked(await a.get("/healthz/live", headers={"X-API-Key": key}))  # under it
            # "/healthz" is a string prefix of "/healthzz", which is checked all the same.
            expect.admitted(await a.get("/healthzz", headers={"X-API-Key": key}), "free", 20, 19)
            expect.admitted(await a.get("/v1/echo", headers={"X-API-Key": key}), "free", 20, 18)

    asyncio.run(run())
    expect.calls(app.state.calls, healthz=27, healthzz=1, echo=1)


def test_lifespan_closes_the_pool(cluster: List[Node], fresh_key: Callable[[str], str]) -> None:
    key = fresh_key("enterprise")
    app = make_app(cluster[0].url)

    async def run() -> None:
        async with lifespan(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as a:
                rs = await asyncio.gather(*[a.get("/v1/echo", headers={"X-API-Key": key}) for _ in range(5)])
                assert sorted(int(r.headers["x-ratelimit-remaining"]) for r in rs) == [1495, 1496, 1497, 1498, 1499]
            mw = middleware_of(app)
            pool = mw._client
            assert pool is not None and not pool.closed
            conns = list(pool._idle)
            assert 1 <= len(conns) <= 5, conns
            assert all(not c._transport.is_closing() for c in conns)
        assert mw._client is None and pool.closed, "lifespan.shutdown.complete did not close the pool"
        assert all(c._transport.is_closing() for c in conns), "a connection to the node is still open"
        assert pool._open == 0, pool._open
        # A request after shutdown (no lifespan, as under ASGITransport) opens a new pool lazily.
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as a:
            expect.admitted(await a.get("/v1/echo", headers={"X-API-Key": key}), "enterprise", 1500, 1494)
        assert mw._client is not None and mw._client is not pool
        mw.close()

    asyncio.run(run())


def test_starlette(cluster: List[Node], fresh_key: Callable[[str], str]) -> None:
    key = fresh_key("free")
    calls = []

    async def hello(request: Request) -> PlainTextResponse:
        calls.append(1)
        return PlainTextResponse("hello")

    app = Starlette(routes=[Route("/hello", hello)])
    app.add_middleware(TierLimitMiddleware, node=cluster[1].url)

    async def run() -> None:
        async with served(app) as a:
            for i in range(20):
                r = await a.get("/hello", headers={"X-API-Key": key})
                expect.admitted(r, "free", 20, 19 - i)
                assert r.text == "hello"
            expect.limited(await a.get("/hello", headers={"X-API-Key": key}), "free", 20)

    asyncio.run(run())
    assert len(calls) == 20


@pytest.mark.parametrize("kwargs,problem", [
    ({"node": "https://127.0.0.1:8080"}, "scheme must be http"),
    ({"node": "127.0.0.1:8080"}, "scheme must be http"),
    ({"node": "http://:8080"}, "no host"),
    ({"node": "http://127.0.0.1:8080/?a=1"}, "base URL only"),
    ({"node": "http://127.0.0.1:99999"}, "out of range"),
    ({"timeout": 0}, "positive"),
    ({"timeout": float("nan")}, "positive"),
    ({"max_connections": 0}, "at least 1"),
    ({"exclude": "/healthz"}, "iterable of path prefixes"),
    ({"exclude": ["healthz"]}, "not a path starting with /"),
])
def test_bad_arguments(kwargs: dict, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        TierLimitMiddleware(make_app, **kwargs)
