"""The client to the node against fake nodes in this process: what it
writes, how it reads, keeps, retries and gives up on connections."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Awaitable, Callable, List, Optional

import pytest

from tierlimit._node import Answer, NodeClient, NodeError, NodeTimeout, parse_answer
from tierlimit._report import _FailureLog
from tierlimit.middleware import _Outage, api_keys

OK = b"HTTP/1.1 200 OK\r\nX-Ratelimit-Limit: 20\r\nContent-Length: 0\r\n\r\n"


class FakeNode:
    """A TCP server on 127.0.0.1 that hands each connection to
    handle(conn, reader, writer), and records what it saw."""

    def __init__(self, handle: Callable[["FakeNode", int, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]):
        self.handle = handle
        self.connections = 0
        self.requests: List[bytes] = []
        self.requests_on: dict = {}
        self.closed_by_client: List[int] = []
        self.port = 0

    async def __aenter__(self) -> "FakeNode":
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = self.connections
        self.requests_on[conn] = 0
        try:
            await self.handle(self, conn, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def read(self, conn: int, reader: asyncio.StreamReader) -> Optional[bytes]:
        """The next request on conn, or None when the client closed it."""
        try:
            req = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed_by_client.append(conn)
            return None
        self.requests.append(req)
        self.requests_on[conn] += 1
        return req

    def client(self, **kw) -> NodeClient:
        kw.setdefault("timeout", 1.0)
        return NodeClient("127.0.0.1", self.port, **kw)


async def answer_all(node: FakeNode, conn: int, reader, writer, answer: bytes = OK) -> None:
    while await node.read(conn, reader) is not None:
        writer.write(answer)


async def until(what: str, check: Callable[[], bool], timeout: float = 5) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, f"{what}: not after {timeout} s"
        await asyncio.sleep(0.005)


def test_request_bytes_and_keep_alive() -> None:
    async def run() -> None:
        async with FakeNode(answer_all) as node:
            client = node.client()
            a = await client.authorize([b"key-1", b"key-2"])
            assert (a.status, a.headers, a.body) == (200, [(b"x-ratelimit-limit", b"20"), (b"content-length", b"0")], b"")
            want = f"GET /authorize HTTP/1.1\r\nHost: 127.0.0.1:{node.port}\r\nX-API-Key: key-1\r\nX-API-Key: key-2\r\n\r\n"
            assert node.requests == [want.encode()]
            for _ in range(9):
                assert (await client.authorize([b"k"])).status == 200
            assert (node.connections, len(node.requests)) == (1, 10), "want 10 checks on 1 kept connection"
            client.close()
            await until("the client's close reaches the node", lambda: node.closed_by_client == [1])

    asyncio.run(run())


def test_host_header_and_path() -> None:
    async def run() -> None:
        async with FakeNode(answer_all) as node:
            client = node.client(host_header="localhost:1", path="/limiter/authorize")
            await client.authorize([b"k"])
            assert node.requests == [b"GET /limiter/authorize HTTP/1.1\r\nHost: localhost:1\r\nX-API-Key: k\r\n\r\n"]
            client.close()

    asyncio.run(run())


def test_load_report_request() -> None:
    bodies: List[bytes] = []

    async def answer_204(node: FakeNode, conn: int, reader, writer) -> None:
        while (head := await node.read(conn, reader)) is not None:
            length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            bodies.append(await reader.readexactly(length))
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")

    async def run() -> None:
        async with FakeNode(answer_204) as node:
            client = node.client(host_header="n", load_path="/limiter/system/load")
            for n in (3, 0):
                a = await client.report_load(n, 4, b"s3cret token")
                assert (a.status, a.body) == (204, b"")
            assert node.requests[0] == (b"POST /limiter/system/load HTTP/1.1\r\nHost: n\r\n"
                                        b"Content-Type: application/json\r\nAuthorization: Bearer s3cret token\r\n"
                                        b"Content-Length: 28\r\n\r\n")
            assert bodies == [b'{"in_flight":3,"capacity":4}', b'{"in_flight":0,"capacity":4}']
            assert node.connections == 1, "the reports share a kept connection"
            client.close()

    asyncio.run(run())


def test_chunked_answer_in_pieces() -> None:
    body = b'{"error":{"code":"rate_limited"}}\n'
    pieces = [b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nTransfer-",
              b"Encoding: chunked\r\n\r\n", b"%x\r\n" % 10, body[:10] + b"\r\n",
              b"%x;ext=1\r\n" % (len(body) - 10) + body[10:], b"\r\n0\r\n", b"Trailer: x\r\n\r\n"]

    async def handle(node, conn, reader, writer) -> None:
        while await node.read(conn, reader) is not None:
            for p in pieces:
                writer.write(p)
                await writer.drain()
                await asyncio.sleep(0.002)

    async def run() -> None:
        async with FakeNode(handle) as node:
            client = node.client()
            for _ in range(2):
                a = await client.authorize([b"k"])
                assert (a.status, a.body) == (429, body), a
                assert (b"transfer-encoding", b"chunked") in a.headers
            assert node.connections == 1, "a chunked answer read whole keeps its connection"
            client.close()

    asyncio.run(run())


@pytest.mark.parametrize("answer", [
    b"HTTX/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n\r\n",  # no length
    b"HTTP/1.1 100 Continue\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nBad header\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n folded: x\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\nX: " + b"a" * 20000 + b"\r\n\r\n",
], ids=["version", "status", "two lengths", "length and chunked", "no length", "1xx", "no colon", "folded",
        "bad chunk", "huge head"])
def test_unreadable_answer_fails_and_closes(answer: bytes) -> None:
    async def handle(node, conn, reader, writer) -> None:
        while await node.read(conn, reader) is not None:
            writer.write(answer if conn == 1 else OK)

    async def run() -> None:
        async with FakeNode(handle) as node:
            client = node.client()
            with pytest.raises(NodeError, match="unreadable answer"):
                await client.authorize([b"k"])
            await until("the client closes the connection", lambda: node.closed_by_client == [1])
            assert (await client.authorize([b"k"])).status == 200
            assert node.connections == 2
            client.close()

    asyncio.run(run())


def test_unasked_bytes_close_the_connection() -> None:
    async def handle(node, conn, reader, writer) -> None:
        while await node.read(conn, reader) is not None:
            writer.write(OK + (b"HTTP/1.1 200 OK\r\n" if conn == 1 else b""))

    async def run() -> None:
        async with FakeNode(handle) as node:
            client = node.client()
            assert (await client.authorize([b"k"])).status == 200  # whole, but more came after it
            assert (await client.authorize([b"k"])).status == 200
            assert node.connections == 2, "a connection with bytes past the answer must not be reused"
            client.close()

    asyncio.run(run())


def test_timeout_closes_the_connection_and_a_late_answer_is_never_read() -> None:
    async def handle(node, conn, reader, writer) -> None:
        while await node.read(conn, reader) is not None:
            if conn == 1:
                await asyncio.sleep(0.3)  # answers, but too late
            writer.write(b"HTTP/1.1 200 OK\r\nX-Conn: %d\r\nContent-Length: 0\r\n\r\n" % conn)

    async def run() -> None:
        async with FakeNode(handle) as node:
            client = node.client(timeout=0.1)
            with pytest.raises(NodeTimeout, match="within 0.1 s"):
                await asyncio.wait_for(client.authorize([b"k"]), 5)
            a = await client.authorize([b"k"])
            assert (b"x-conn", b"2") in a.headers, f"answer {a} came on the timed-out connection"
            await asyncio.sleep(0.35)  # conn 1's late answer is written now, to a closed socket
            a = await client.authorize([b"k"])
            assert (b"x-conn", b"2") in a.headers, a
            assert node.connections == 2
            client.close()

    asyncio.run(run())


def test_kept_connection_closed_by_the_node_is_retried_once() -> None:
    async def handle(node, conn, reader, writer) -> None:
        # Connection 1 answers once, then takes the next request and closes
        # unanswered, as a server closing an idle connection just then would.
        while await node.read(conn, reader) is not None:
            if conn == 1 and node.requests_on[1] == 2:
                return
            writer.write(OK)

    async def run() -> None:
        async with FakeNode(handle) as node:
            client = node.client()
            assert (await client.authorize([b"k"])).status == 200
            assert (await client.authorize([b"k"])).status == 200
            assert node.requests_on == {1: 2, 2: 1}
            client.close()

    asyncio.run(run())


def test_new_connection_closed_unanswered_is_an_error_not_retried() -> None:
    async def handle(node, conn, reader, writer) -> None:
        await node.read(conn, reader)

    async def run() -> None:
        async with FakeNode(handle) as node:
            client = node.client()
            with pytest.raises(NodeError, match="closed the connection"):
                await client.authorize([b"k"])
            assert len(node.requests) == 1
            client.close()

    asyncio.run(run())


def test_idle_connection_closed_by_the_node() -> None:
    async def handle(node, conn, reader, writer) -> None:
        if await node.read(conn, reader) is not None:
            writer.write(OK)  # then closes, with the connection idle in the pool

    async def run() -> None:
        async with FakeNode(handle) as node:
            client = node.client()
            assert (await client.authorize([b"k"])).status == 200
            await until("the pool forgets the closed connection", lambda: client._open == 0 and not client._idle)
            assert (await client.authorize([b"k"])).status == 200
            assert node.connections == 2
            client.close()

    asyncio.run(run())


def test_connection_close_answer_is_not_kept() -> None:
    async def run() -> None:
        async def handle(node, conn, reader, writer) -> None:
            await answer_all(node, conn, reader, writer, OK.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))

        async with FakeNode(handle) as node:
            client = node.client()
            for _ in range(3):
                assert (await client.authorize([b"k"])).status == 200
            assert node.connections == 3
            assert client._open == 0 and client._idle == []
            client.close()

    asyncio.run(run())


def test_pool_cap_and_lifo() -> None:
    async def handle(node, conn, reader, writer) -> None:
        while await node.read(conn, reader) is not None:
            await asyncio.sleep(0.02)
            writer.write(b"HTTP/1.1 200 OK\r\nX-Conn: %d\r\nContent-Length: 0\r\n\r\n" % conn)

    async def run() -> None:
        async with FakeNode(handle) as node:
            client = node.client(max_connections=2)
            answers = await asyncio.wait_for(asyncio.gather(*[client.authorize([b"k"]) for _ in range(8)]), 5)
            assert [a.status for a in answers] == [200] * 8
            assert node.connections == 2 and node.requests_on == {1: 4, 2: 4}
            # Both idle now; the one released last is taken first.
            last = client._idle[-1]
            assert (await client.authorize([b"k"])).status == 200
            assert client._idle[-1] is last
            client.close()

    asyncio.run(run())


def test_waiting_for_a_connection_ends_at_the_deadline() -> None:
    async def handle(node, conn, reader, writer) -> None:
        while await node.read(conn, reader) is not None:
            pass  # never answers

    async def run() -> None:
        async with FakeNode(handle) as node:
            client = node.client(max_connections=1, timeout=0.1)
            got = await asyncio.wait_for(asyncio.gather(client.authorize([b"a"]), client.authorize([b"b"]),
                                                         return_exceptions=True), 5)
            assert [type(e) for e in got] == [NodeTimeout, NodeTimeout], got
            assert "came free" in str(got[1])
            assert client._open == 0 and not client._waiters
            client.close()

    asyncio.run(run())


def test_nothing_listening() -> None:
    async def run() -> None:
        async with FakeNode(answer_all) as node:
            port = node.port
        client = NodeClient("127.0.0.1", port, timeout=1.0)
        with pytest.raises(NodeError, match=f"connect to 127.0.0.1:{port}"):
            await asyncio.wait_for(client.authorize([b"k"]), 5)
        assert client._open == 0
        client.close()

    asyncio.run(run())


def test_connect_slower_than_a_check_goes_on_and_joins_the_pool() -> None:
    """On a machine too busy to connect within a check's timeout, the check
    fails (and the middleware fails open or closed), but the connection
    still made is kept for the next check instead of being thrown away."""

    async def run() -> None:
        async with FakeNode(answer_all) as node:
            client = node.client(timeout=0.05)
            real = client.loop.create_connection
            gate = asyncio.Event()

            async def slow(*args, **kw):
                await gate.wait()
                return await real(*args, **kw)

            client.loop.create_connection = slow  # type: ignore[method-assign]
            try:
                with pytest.raises(NodeTimeout, match="connect to 127.0.0.1:.* timed out"):
                    await client.authorize([b"k"])
                assert client._open == 1, "the connect goes on in its slot"
                gate.set()
                await until("the late connection is idle in the pool", lambda: len(client._idle) == 1)
            finally:
                del client.loop.create_connection
            assert (await client.authorize([b"k"])).status == 200
            assert node.connections == 1 and client._open == 1
            client.close()
            assert client._open == 0

    asyncio.run(run())


def test_close_ends_a_connect_under_way() -> None:
    async def run() -> None:
        async with FakeNode(answer_all) as node:
            client = node.client(timeout=0.05)
            real = client.loop.create_connection

            async def never(*args, **kw):
                await asyncio.Event().wait()
                return await real(*args, **kw)

            client.loop.create_connection = never  # type: ignore[method-assign]
            try:
                with pytest.raises(NodeTimeout):
                    await client.authorize([b"k"])
                client.close()
                await until("the connect's slot is given back", lambda: client._open == 0 and not client._connecting)
            finally:
                del client.loop.create_connection

    asyncio.run(run())


def test_close_after_the_loop_closed() -> None:
    """A client whose loop has ended (no lifespan shutdown closed it) can
    still be closed: it lets go of its connections."""
    listener = socket.create_server(("127.0.0.1", 0))  # the kernel accepts; nothing answers
    holder: List[NodeClient] = []

    async def run() -> None:
        client = NodeClient("127.0.0.1", listener.getsockname()[1], timeout=1.0)
        conn = await client._acquire(asyncio.get_running_loop().time() + 1)
        client._adopt(conn)  # idle in the pool
        holder.append(client)

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(run())
    finally:
        loop.close()
    client = holder[0]
    transport = client._idle[0]._transport
    try:
        client.close()  # RuntimeError('Event loop is closed') if it aborted the transport
        assert client.closed and client._idle == [] and client._open == 0
    finally:
        # What collecting the transport would do, without its ResourceWarning.
        transport._sock.close()
        transport._sock = None
        listener.close()


def test_cancelled_call_drops_its_connection() -> None:
    async def handle(node, conn, reader, writer) -> None:
        while await node.read(conn, reader) is not None:
            await asyncio.sleep(0.1 if conn == 1 else 0)
            writer.write(b"HTTP/1.1 200 OK\r\nX-Conn: %d\r\nContent-Length: 0\r\n\r\n" % conn)

    async def run() -> None:
        async with FakeNode(handle) as node:
            client = node.client()
            task = asyncio.ensure_future(client.authorize([b"k"]))
            await until("the question reaches the node", lambda: len(node.requests) == 1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            a = await client.authorize([b"k"])
            assert (b"x-conn", b"2") in a.headers
            assert client._open == 1
            client.close()
            with pytest.raises(NodeError, match="closed"):
                await client.authorize([b"k"])

    asyncio.run(run())


def test_parse_answer_waits_for_the_whole_answer() -> None:
    answer = (b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 12\r\nContent-Type: application/json\r\n"
              b"Content-Length: 8\r\n\r\n{\"a\":1}\n")
    for i in range(len(answer)):
        assert parse_answer(answer[:i]) is None, f"parse_answer of the first {i} bytes"
    got, keep, used = parse_answer(answer + b"HTTP/1.1")
    assert (got.status, got.body, keep, used) == (429, b'{"a":1}\n', True, len(answer))
    assert got.headers == [(b"retry-after", b"12"), (b"content-type", b"application/json"), (b"content-length", b"8")]


@pytest.mark.parametrize("head,keep", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 0", True),
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0", False),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 0", False),
    (b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0", True),
    (b"HTTP/1.1 204", True),
])
def test_parse_answer_keep_alive(head: bytes, keep: bool) -> None:
    parsed = parse_answer(head + b"\r\n\r\n")
    assert parsed is not None and parsed[1] is keep, parsed


def test_api_keys() -> None:
    assert api_keys([(b"host", b"x"), (b"X-Api-Key", b"a"), (b"x-api-key", b"b")]) == ([b"a", b"b"], None)
    assert api_keys([(b"host", b"x")]) == ([], "missing X-API-Key header")
    assert api_keys([(b"x-api-key", b"k" * 256)])[1] is None
    assert api_keys([(b"x-api-key", b"!~")])[1] is None


def test_outage_logs_once_then_every_few_seconds(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tierlimit")
    o = _Outage("http://127.0.0.1:1", fail_open=True, every=5.0)
    o.answered(0.0)
    for t in (10.0, 10.1, 12.0, 14.9):
        o.failed(t, "connect refused")
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "tierlimit node http://127.0.0.1:1 unreachable: connect refused; requests go on unchecked (fail_open)")]
    o.failed(15.0, "connect refused")
    assert caplog.records[-1].getMessage() == (
        "tierlimit node http://127.0.0.1:1 still unreachable: connect refused; "
        "4 checks failed in the last 5 s, 5 since 5 s ago")
    o.failed(16.0, "x")
    o.answered(17.5)
    assert (caplog.records[-1].levelname, caplog.records[-1].getMessage()) == (
        "INFO", "tierlimit node http://127.0.0.1:1 answers again after 7.5 s; 6 checks failed meanwhile")
    o.answered(18.0)
    o.failed(30.0, "no answer")
    assert len(caplog.records) == 4 and caplog.records[-1].levelname == "WARNING"


def test_outage_that_flaps_logs_at_most_every_few_seconds(caplog: pytest.LogCaptureFixture) -> None:
    """A node that fails and answers by turns (a busy machine) logs a
    WARNING and its INFO, then nothing until the next WARNING is due."""
    caplog.set_level(logging.INFO, logger="tierlimit")
    o = _Outage("n", fail_open=True, every=5.0)
    t = 100.0
    for _ in range(100):  # a failure, then an answer, every 50 ms for 5 s
        o.failed(t, "no answer")
        o.answered(t + 0.01)
        t += 0.05
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "tierlimit node n unreachable: no answer; requests go on unchecked (fail_open)"),
        ("INFO", "tierlimit node n answers again after 0.0 s; 1 checks failed meanwhile")]
    o.failed(105.0, "no answer")
    assert (caplog.records[-1].levelname, caplog.records[-1].getMessage()) == (
        "WARNING", "tierlimit node n unreachable: no answer; requests go on unchecked (fail_open); "
        "100 checks failed since the last warning")
    assert len(caplog.records) == 3


def test_failed_reports_log_once_a_minute_for_each_cause(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tierlimit")
    log = _FailureLog("n", every=60.0)
    log.succeeded()  # nothing owed
    for t in range(0, 50, 5):  # refused (401) every 5 s, and the node unreachable at times
        log.failed(float(t), "401", logging.ERROR, "refused")
        if t in (10, 20):
            log.failed(float(t), "unreachable", logging.WARNING, "unreachable")
        if t == 40:
            log.succeeded()
    log.failed(60.0, "401", logging.ERROR, "refused")
    log.failed(61.0, "401", logging.ERROR, "refused")
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("ERROR", "refused"),
        ("WARNING", "unreachable"),
        ("INFO", "tierlimit: load reports reach the node n again"),
        ("ERROR", "refused; 10 reports failed this way in the last 60 s"),
    ]


def test_answer_repr() -> None:
    assert repr(Answer(200, [], b"")) == "Answer(status=200, headers=[], body=b'')"
