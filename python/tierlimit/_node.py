"""The client that asks the node beside the app: GET /authorize over HTTP/1.1.

It only ever talks to our own node (cmd/node), over loopback, in plain
HTTP: three request shapes (``GET /authorize`` with Host and the X-API-Key
headers, no body; ``POST /system/settle``, no body; ``POST /system/load``
with a small JSON body), and answers of under a kilobyte with a Content-Length
(Transfer-Encoding: chunked is read too, defensively). It is not a general
HTTP client and must not become one: no TLS, no redirects, no proxies, no
cookies, no 1xx answers.

Why not httpx: the check is the only thing the middleware adds to a
request, and it must cost less than the call to a central Redis it
replaces. Asking a node on loopback, one sequential caller over one
keep-alive connection (python/bench/check_cost.py, Python 3.11, 2 cores
shared with other work, load average 5-9; python/README.md has the
command and a whole table):

===================================  ============  =============
client                               CPU/call      wall/call
===================================  ============  =============
this client (asyncio.Protocol)       47-68 µs      103-142 µs
the same under asyncio.wait_for      76-93 µs      140-188 µs
httpx.AsyncClient 0.23               796-972 µs    921-1153 µs
===================================  ============  =============

httpx costs 14-17 times as much Python CPU per check, several times a
pipelined GET+INCR+EXPIRE to Redis (about 110-130 µs), and on a CPU-bound
instance that CPU is taken from the app. So each connection here is an
``asyncio.Protocol`` that parses the answer in ``data_received``, with no
stream objects or tasks between the socket and the caller.

Connections are pooled: an idle one is reused, the most recently used first
(LIFO), a new one is opened when none is idle, up to ``max_connections``,
and beyond that a caller waits for one to come free. Every call has one
deadline, for waiting, connecting and the answer together, kept with a
``loop.call_at`` timer that fails the caller's future, which costs less
than ``asyncio.wait_for`` (a task per call: the table's second row). A
connection whose call timed out, or whose answer could not be parsed, is
closed and never reused: a late answer on it would be read as the answer
to the next question. A connect that outlives its call's deadline goes
on, for a few seconds at most, and its connection joins the pool.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Deque, List, Optional, Sequence, Set, Tuple

__all__ = ["Answer", "NodeClient", "NodeError", "NodeTimeout"]

Header = Tuple[bytes, bytes]

# The node's answers are a few hundred bytes; anything far larger is not
# the node, and reading it would only cost memory.
_MAX_HEAD = 16 * 1024
_MAX_BODY = 64 * 1024
# How long a connect may go on after the check that began it gave up.
_CONNECT_LIMIT = 5.0


class NodeError(Exception):
    """The node could not be asked, or its answer could not be read."""


class NodeTimeout(NodeError):
    """The node did not answer within the call's deadline."""


class _Stale(NodeError):
    """A reused connection was closed before any byte of the answer came.

    The node closes connections it has kept idle too long (Go's
    IdleTimeout); a request written just then never reached a handler, so
    it is sent again, once, on another connection.
    """


class Answer:
    """The node's answer: its status, headers (names in lower case, as ASGI
    wants them, values as they came) and body."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: List[Header], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def __repr__(self) -> str:
        return f"Answer(status={self.status}, headers={self.headers!r}, body={self.body!r})"


def parse_answer(buf: bytes) -> Optional[Tuple[Answer, bool, int]]:
    """Parses one HTTP/1.x response at the start of buf.

    It returns None if buf does not hold all of it yet, else the answer,
    whether the connection may be kept, and how many bytes of buf it took.
    It raises ValueError if buf cannot be the start of a response we read.
    """
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > _MAX_HEAD:
            raise ValueError("response head too long")
        return None
    if end > _MAX_HEAD:
        raise ValueError("response head too long")
    lines = buf[:end].split(b"\r\n")
    line = lines[0]
    # "HTTP/1.1 200 OK": version, three digits, then a space or the end.
    if len(line) < 12 or line[:7] != b"HTTP/1." or line[8:9] != b" " or line[12:13] not in (b" ", b""):
        raise ValueError("bad status line")
    code = line[9:12]
    if not code.isdigit():
        raise ValueError("bad status code")
    status = int(code)
    if status < 200:
        raise ValueError("informational answer")  # we never send Expect
    keep = line[7:8] == b"1"  # HTTP/1.0 closes unless it says otherwise
    length = -1
    chunked = False
    headers: List[Header] = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name[-1:] in (b" ", b"\t") or line[:1] in (b" ", b"\t"):
            raise ValueError("bad header line")
        name = name.lower()
        value = value.strip(b" \t")
        if name == b"content-length":
            if not value.isdigit() or (length >= 0 and int(value) != length):
                raise ValueError("bad Content-Length")
            length = int(value)
        elif name == b"transfer-encoding":
            if value.lower() != b"chunked":
                raise ValueError("unsupported Transfer-Encoding")
            chunked = True
        elif name == b"connection":
            tokens = [t.strip() for t in value.lower().split(b",")]
            if b"close" in tokens:
                keep = False
            elif b"keep-alive" in tokens:
                keep = True
        headers.append((name, value))
    start = end + 4
    if status == 204 or status == 304:
        return Answer(status, headers, b""), keep, start
    if chunked:
        if length >= 0:
            raise ValueError("both Content-Length and chunked")  # RFC 9112 6.3: a smuggling sign
        return _parse_chunked(buf, start, status, headers, keep)
    if length < 0:
        raise ValueError("answer without a length")  # would need the close to end it
    if length > _MAX_BODY:
        raise ValueError("answer body too long")
    if len(buf) < start + length:
        return None
    return Answer(status, headers, bytes(buf[start : start + length])), keep, start + length


def _parse_chunked(
    buf: bytes, pos: int, status: int, headers: List[Header], keep: bool
) -> Optional[Tuple[Answer, bool, int]]:
    body = bytearray()
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            if len(buf) - pos > 1024:
                raise ValueError("chunk size line too long")
            return None
        size_field = buf[pos:eol].split(b";", 1)[0].strip(b" \t")
        if not size_field or size_field.strip(b"0123456789abcdefABCDEF"):
            raise ValueError("bad chunk size")
        size = int(size_field, 16)
        pos = eol + 2
        if size == 0:
            while True:  # trailers, up to the empty line
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    if len(buf) - pos > _MAX_HEAD:
                        raise ValueError("trailers too long")
                    return None
                if eol == pos:
                    return Answer(status, headers, bytes(body)), keep, pos + 2
                pos = eol + 2
        if len(body) + size > _MAX_BODY:
            raise ValueError("answer body too long")
        if len(buf) < pos + size + 2:
            return None
        if buf[pos + size : pos + size + 2] != b"\r\n":
            raise ValueError("chunk not followed by CRLF")
        body += buf[pos : pos + size]
        pos += size + 2


class _Conn(asyncio.Protocol):
    """One keep-alive connection to the node; one question at a time."""

    def __init__(self, client: NodeClient) -> None:
        self._client = client
        self._transport: Optional[asyncio.Transport] = None
        self._waiter: Optional[asyncio.Future[Answer]] = None
        self._buf = b""  # the part of the current answer read so far
        self.served = 0  # answers read on this connection
        self.reusable = False  # the last answer was whole and the node keeps the connection
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def ask(self, request: bytes) -> asyncio.Future[Answer]:
        """Writes request and returns the future of its answer."""
        fut: asyncio.Future[Answer] = self._client.loop.create_future()
        self._waiter = fut
        self._buf = b""
        self.reusable = False
        assert self._transport is not None
        self._transport.write(request)
        return fut

    def data_received(self, data: bytes) -> None:
        fut = self._waiter
        if fut is None or fut.done():
            # Bytes nobody asked for: the stream is out of step.
            self.abort()
            return
        buf = self._buf + data if self._buf else data
        try:
            parsed = parse_answer(buf)
        except ValueError as e:
            self._waiter = None
            self.abort()
            fut.set_exception(NodeError(f"unreadable answer from the node: {e}"))
            return
        if parsed is None:
            self._buf = buf
            return
        answer, keep, used = parsed
        self._waiter = None
        self._buf = b""
        self.served += 1
        self.reusable = keep and used == len(buf)
        fut.set_result(answer)

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.lost = True
        self.reusable = False
        fut = self._waiter
        self._waiter = None
        if fut is None:
            self._client._forget_idle(self)
        elif not fut.done():
            if self.served and not self._buf:
                fut.set_exception(_Stale("the node closed a kept connection"))
            else:
                fut.set_exception(NodeError(f"the node closed the connection: {exc or 'EOF'}"))

    def expire(self) -> None:
        """Fails the question in flight, if any, at its deadline, and closes
        the connection: its answer may still come, and must not be read as
        the next one's."""
        fut = self._waiter
        if fut is not None and not fut.done():
            self._waiter = None
            self.abort()
            fut.set_exception(NodeTimeout(f"no answer from the node within {self._client.timeout:g} s"))

    def abort(self) -> None:
        self.reusable = False
        if self._transport is not None:
            self._transport.abort()


def _expire(fut: asyncio.Future, message: str) -> None:  # type: ignore[type-arg]
    if not fut.done():
        fut.set_exception(NodeTimeout(message))


class NodeClient:
    """A pool of HTTP/1.1 keep-alive connections to one node.

    Create it inside the event loop it is used in; it belongs to that loop
    and is not thread-safe. ``timeout`` (seconds) bounds each ``authorize``
    call whole: waiting for a connection, connecting, and the answer.
    ``host_header`` is the Host header (default "host:port"), ``path`` the
    request's target (default "/authorize"), ``settle_path`` the settle
    call's (default "/system/settle"), ``load_path`` the load report's
    (default "/system/load"), ``max_connections`` the most connections
    open at once (default 64).
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout: float,
        host_header: Optional[str] = None,
        path: str = "/authorize",
        settle_path: str = "/system/settle",
        load_path: str = "/system/load",
        max_connections: int = 64,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.timeout = timeout
        self._host = host
        self._port = port
        self._max = max_connections
        hh = host_header or f"{host}:{port}"
        self._prefix = f"GET {path} HTTP/1.1\r\nHost: {hh}\r\n".encode("ascii")
        self._settle_prefix = f"POST {settle_path} HTTP/1.1\r\nHost: {hh}\r\nContent-Length: 0\r\n".encode("ascii")
        self._load_prefix = f"POST {load_path} HTTP/1.1\r\nHost: {hh}\r\nContent-Type: application/json\r\n".encode("ascii")
        self._idle: List[_Conn] = []  # LIFO: the warmest connection is taken first
        self._open = 0  # connections made or being made, and not yet closed
        self._waiters: Deque[asyncio.Future[None]] = deque()
        self._connecting: Set[asyncio.Task] = set()  # type: ignore[type-arg]  # connects under way, kept from the GC
        self.closed = False

    async def authorize(self, keys: Sequence[bytes], estimate: Optional[int] = None, settle_later: bool = False) -> Answer:
        """Asks the node about a request carrying the X-API-Key values keys.

        Each value must already be checked to be printable ASCII without
        spaces: it is written into the request as it is. estimate, if not
        None, is the request's cost estimate (Tierlimit-Cost); settle_later
        asks the node to keep a reservation open until ``settle``. It
        raises NodeError (NodeTimeout past the deadline) if the node cannot
        answer.
        """
        extra = b""
        if estimate is not None:
            extra += b"Tierlimit-Cost: " + str(int(estimate)).encode() + b"\r\n"
        if settle_later:
            extra += b"Tierlimit-Settle: later\r\n"
        return await self._call(self._prefix + b"".join([b"X-API-Key: " + k + b"\r\n" for k in keys]) + extra + b"\r\n")

    async def settle(self, key: bytes, reservation: bytes, cost: Optional[int], failed: bool) -> Answer:
        """Settles the reservation the node's 200 to ``authorize`` named:
        at the actual cost, if not None, else failed (all given back) or
        not (the estimate stands). key and reservation must be printable
        ASCII without spaces."""
        extra = b"X-API-Key: " + key + b"\r\nTierlimit-Reservation: " + reservation + b"\r\n"
        if cost is not None:
            extra += b"Tierlimit-Cost: " + str(int(cost)).encode() + b"\r\n"
        if failed:
            extra += b"Tierlimit-Failed: true\r\n"
        return await self._call(self._settle_prefix + extra + b"\r\n")

    async def report_load(self, in_flight: int, capacity: int, token: bytes) -> Answer:
        """Reports the app's load, ``{"in_flight": in_flight, "capacity":
        capacity}``, with the admin bearer token, which must already be
        checked to be printable ASCII. The node answers 200 with the state in
        force (``{"status": "DEGRADED", "version": "..."}``) when it took
        the report (a node of an earlier release, 204 and no body). A report
        only states the present, so one sent twice (after a kept connection
        was found closed) does no harm."""
        body = b'{"in_flight":%d,"capacity":%d}' % (in_flight, capacity)
        return await self._call(
            self._load_prefix
            + b"Authorization: Bearer " + token
            + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
            + body
        )

    async def _call(self, request: bytes) -> Answer:
        """Sends request on a pooled connection and returns the answer."""
        loop = self.loop
        deadline = loop.time() + self.timeout
        retried = False
        while True:
            conn = self._take_idle()
            if conn is None:
                conn = await self._acquire(deadline)
            fut = conn.ask(request)
            timer = loop.call_at(deadline, conn.expire)
            try:
                answer = await fut
            except _Stale:
                timer.cancel()
                self._drop(conn)
                if retried or loop.time() >= deadline:
                    raise NodeError("the node closed the connection") from None
                retried = True
                continue
            except BaseException:
                timer.cancel()
                self._drop(conn)
                raise
            timer.cancel()
            self._release(conn)
            return answer

    def close(self) -> None:
        """Closes the idle connections, and the others as their calls end;
        calls waiting for a connection fail, and new calls are refused.
        Once its loop is closed, nothing of it can run any more: it only
        lets go of the connections (their sockets close when collected)."""
        self.closed = True
        if self.loop.is_closed():
            self._idle, self._connecting, self._waiters, self._open = [], set(), deque(), 0
            return
        for task in list(self._connecting):
            task.cancel()
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.abort()
        self._open -= len(idle)
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_exception(NodeError("client closed"))

    def _take_idle(self) -> Optional[_Conn]:
        idle = self._idle
        while idle:
            conn = idle.pop()
            if not conn.lost:
                return conn
            self._open -= 1
        return None

    async def _acquire(self, deadline: float) -> _Conn:
        """Returns a connection: an idle one, a new one, or the next one
        released once max_connections are open."""
        loop = self.loop
        while True:
            if self.closed:
                raise NodeError("client closed")
            conn = self._take_idle()
            if conn is not None:
                return conn
            if self._open < self._max:
                self._open += 1  # the slot is _connect's from here on
                return await self._connect(deadline)
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.append(fut)
            timer = loop.call_at(deadline, _expire, fut, "no connection to the node came free in time")
            try:
                await fut
            except BaseException:
                if fut in self._waiters:
                    self._waiters.remove(fut)
                elif fut.done() and not fut.cancelled() and fut.exception() is None:
                    self._wake()  # woken, but leaving: pass the turn on
                raise
            finally:
                timer.cancel()

    async def _connect(self, deadline: float) -> _Conn:
        """Opens a connection in a slot _acquire counted in _open, and
        returns it by the deadline, or raises.

        A connect that fails gives its slot back. One that outlives the
        caller (its deadline passed, or it was cancelled) goes on, for up to
        _CONNECT_LIMIT, and the connection it makes joins the idle pool: on
        a machine so busy that connecting takes longer than a check may,
        giving up on every connect would leave every check unanswered."""
        loop = self.loop
        result: asyncio.Future[_Conn] = loop.create_future()
        task = loop.create_task(
            asyncio.wait_for(loop.create_connection(lambda: _Conn(self), self._host, self._port), _CONNECT_LIMIT)
        )

        def done(t: asyncio.Task) -> None:  # type: ignore[type-arg]
            exc = NodeError("client closed") if t.cancelled() else t.exception()
            if exc is None:
                conn = t.result()[1]
                if not result.done():
                    result.set_result(conn)
                else:
                    self._adopt(conn)
                return
            self._open -= 1
            self._wake()
            if not result.done():
                result.set_exception(NodeError(f"connect to {self._host}:{self._port}: {exc}"))

        task.add_done_callback(done)
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)
        timer = loop.call_at(deadline, _expire, result, f"connect to {self._host}:{self._port} timed out")
        try:
            return await result
        finally:
            timer.cancel()

    def _adopt(self, conn: _Conn) -> None:
        """Takes a connection its caller no longer waits for into the pool."""
        if self.closed or conn.lost:
            conn.abort()
            self._open -= 1
        else:
            self._idle.append(conn)
        self._wake()

    def _release(self, conn: _Conn) -> None:
        if conn.reusable and not conn.lost and not self.closed:
            self._idle.append(conn)
        else:
            conn.abort()
            self._open -= 1
        self._wake()

    def _drop(self, conn: _Conn) -> None:
        conn.abort()
        self._open -= 1
        self._wake()

    def _forget_idle(self, conn: _Conn) -> None:
        # An idle connection the node closed: free its place at once.
        try:
            self._idle.remove(conn)
        except ValueError:
            return  # in use: its caller drops it
        self._open -= 1
        self._wake()

    def _wake(self) -> None:
        waiters = self._waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

