"""TierLimitMiddleware: an ASGI middleware that asks the tierlimit node
beside the app before each request.

Every API instance runs a node of the limiter cluster beside it (a sidecar
on loopback); the node counts each API key across the whole cluster and
answers ``GET /authorize`` in well under a millisecond. This middleware
sends it the request's X-API-Key header(s) and then, by the node's answer:

- 200: calls the app, and adds the node's rate-limit headers
  (X-Ratelimit-Limit, X-Ratelimit-Remaining, X-Ratelimit-Reset,
  Ratelimit-Policy, Ratelimit) to the app's response, replacing any the app
  set;
- 401, 429 (any 4xx): sends the node's answer as it is (status, JSON body,
  Content-Type, Cache-Control, the rate-limit headers and Retry-After)
  without calling the app or reading the request's body;
- 5xx, no answer, or none within ``timeout``: calls the app without
  rate-limit headers (``fail_open=True``, the default) or answers 503
  ``limiter_unavailable`` with ``Retry-After: 1``.

A request whose X-API-Key the node would refuse anyway (missing, empty,
longer than 256 bytes, or with a byte that is not printable ASCII, space
included) gets the node's 401 from here, word for word, without asking it;
so no byte that could smuggle a header into the question is ever written.

With ``capacity`` and ``admin_token`` it also reports the app's load to the
node (``POST /system/load``): the requests it let through whose app call
has not returned, against ``capacity``. With ``queue_wait`` as well it runs
at most ``capacity`` of them at once and holds the others, paid tiers
first, shedding the free ones still waiting when the cluster goes
DEGRADED.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from typing import Any, Awaitable, Callable, Iterable, List, MutableMapping, Optional, Tuple
from urllib.parse import urlsplit

from ._node import Answer, NodeClient, NodeError
from ._queue import SHED, SlotQueue
from ._report import LoadReporter

__all__ = ["TierLimitMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Header = Tuple[bytes, bytes]

logger = logging.getLogger("tierlimit")

# The headers the node writes on every decided check.
_RATE_HEADERS = frozenset(
    [b"x-ratelimit-limit", b"x-ratelimit-remaining", b"x-ratelimit-reset", b"ratelimit-policy", b"ratelimit"]
)
# The node's headers a refusal carries on to the client.
_REFUSAL_HEADERS = _RATE_HEADERS | {b"retry-after", b"content-type", b"cache-control"}

# config.CheckKey: 1 to 256 bytes of printable ASCII without spaces.
_MAX_KEY_LEN = 256
_VALID_KEY = re.compile(rb"[\x21-\x7e]{1,256}")

_JSON_HEADERS = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]

# The node's -capacity takes up to this many jobs at once; so do its reports.
_MAX_CAPACITY = 1_000_000
# The node counts a load report for 2 s (loadctl.DefaultStale).
_REPORT_STALE = 2.0
# An admin token the node can read: printable ASCII, no space at either end
# (it trims them), within its 1024-byte Authorization header.
_ADMIN_TOKEN = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")
_MAX_ADMIN_TOKEN = 1024 - len("Bearer ")


def _error_body(code: str, message: str) -> bytes:
    # As the node's encoding/json writes it: compact, and a newline.
    return json.dumps({"error": {"code": code, "message": message}}, separators=(",", ":")).encode() + b"\n"


def _key_problem(key: bytes) -> Optional[str]:
    """The node's config.CheckKey, word for word: what is wrong with key, or None."""
    if _VALID_KEY.fullmatch(key):
        return None
    if not key:
        return "empty API key"
    if len(key) > _MAX_KEY_LEN:
        return f"API key is {len(key)} bytes, longer than {_MAX_KEY_LEN}"
    for i, c in enumerate(key):
        if c <= 0x20 or c >= 0x7F:
            return f"API key has byte {c:#x} at {i}; want printable ASCII without spaces"
    return None  # not reached


def api_keys(headers: Iterable[Tuple[bytes, bytes]]) -> Tuple[List[bytes], Optional[str]]:
    """Returns every X-API-Key value of a request, and the reason the node
    would refuse them without looking them up (its words), or None.

    Several valid values are returned for the node to refuse, so that it
    decides them as it decides any other request.
    """
    keys = [v for k, v in headers if len(k) == 9 and k.lower() == b"x-api-key"]
    if not keys:
        return keys, "missing X-API-Key header"
    for key in keys:
        problem = _key_problem(key)
        if problem is not None:
            if len(keys) > 1:
                return keys, "more than one X-API-Key header"  # the node checks the count first
            return keys, "X-API-Key: " + problem
    return keys, None


class _Outage:
    """Whether the node answers, and what to log about it: one WARNING when
    it stops, then at most one every ``every`` seconds with the count of
    checks that failed meanwhile, and one INFO when it answers again. A
    node that fails and answers by turns logs no more than that either: a
    failure within ``every`` seconds of the last WARNING is only counted,
    and only an outage that was warned of logs its end. Time is a
    parameter (seconds on any monotonic clock)."""

    def __init__(self, node: str, fail_open: bool, every: float = 5.0) -> None:
        self.node = node
        self.outcome = "requests go on unchecked (fail_open)" if fail_open else "requests get 503"
        self.every = every
        self.down = False  # the last check failed
        self.warned = False  # a WARNING was logged for the outage going on
        self.since = 0.0  # when the warned outage began
        self.warned_at = float("-inf")  # when the last WARNING was logged
        self.failed_total = 0  # checks failed since the warned outage began
        self.unlogged = 0  # checks failed since the last WARNING

    def failed(self, now: float, reason: str) -> None:
        self.down = True
        self.unlogged += 1
        if self.warned:
            self.failed_total += 1
        if now - self.warned_at < self.every:
            return
        if not self.warned:
            self.warned, self.since, self.failed_total = True, now, 1
            extra = "" if self.unlogged == 1 else f"; {self.unlogged} checks failed since the last warning"
            logger.warning("tierlimit node %s unreachable: %s; %s%s", self.node, reason, self.outcome, extra)
        else:
            logger.warning(
                "tierlimit node %s still unreachable: %s; %d checks failed in the last %.0f s, %d since %.0f s ago",
                self.node, reason, self.unlogged, now - self.warned_at, self.failed_total, now - self.since,
            )
        self.warned_at, self.unlogged = now, 0

    def answered(self, now: float) -> None:
        if not self.down:
            return
        self.down = False
        if self.warned:
            logger.info(
                "tierlimit node %s answers again after %.1f s; %d checks failed meanwhile",
                self.node, now - self.since, self.failed_total,
            )
            self.warned, self.failed_total = False, 0


class TierLimitMiddleware:
    """An ASGI middleware that rate-limits requests by their X-API-Key,
    asking the tierlimit node beside the app. For Starlette and FastAPI::

        app.add_middleware(TierLimitMiddleware, node="http://127.0.0.1:8080")

    It checks HTTP requests and WebSocket connections (at connect: a refused
    one gets the node's answer through the ``websocket.http.response``
    extension if the server offers it, else a close with code 1008 before
    accept, which uvicorn answers with 403), and passes lifespan and
    anything else through. It is safe for concurrent requests in one event
    loop; its connections to the node are made lazily, in the loop that
    serves the first request, and closed when the app sends
    ``lifespan.shutdown.complete``.

    Keyword arguments:

    node
        Base URL of the node beside the app. Default
        ``"http://127.0.0.1:8080"``. Plain http only: the node is on
        loopback, and the checks carry nothing but the API key. A path
        (``http://127.0.0.1:8080/limiter``) is put before ``/authorize``.
    timeout
        Seconds one check may take in all, waiting for a connection
        included. Default 0.1: the node answers in well under a
        millisecond, and its worst case (a key's owner unreachable, when
        it decides alone) is about 20 ms, so 100 ms is five times that;
        and 100 ms added to an API call, once, when the node hangs, is
        far below what its client notices next to a transcription.
    fail_open
        What a request gets when the node cannot be reached, does not
        answer in time, or answers 5xx: True (the default) lets it through
        to the app, without rate-limit headers; False answers 503 with
        ``{"error":{"code":"limiter_unavailable",...}}`` and
        ``Retry-After: 1``. Either way the first failure logs a WARNING
        on the "tierlimit" logger, then at most one line every 5 seconds
        with a count, and an INFO once the node answers again.
    exclude
        Paths not checked (nor counted), each with everything under it:
        ``("/healthz", "/docs")`` leaves ``/docs`` and ``/docs/oauth2``
        alone but checks ``/docsearch``. Matched against the ASGI
        ``path``. Default none.
    max_connections
        Most connections kept to the node at once; a check that finds all
        of them busy waits for one (within ``timeout``). Default 64.
    capacity
        The jobs the app's GPUs run at once (a whole number from 1 to
        1,000,000). With ``admin_token``, the middleware reports the app's
        load to the node every ``report_interval`` seconds: the HTTP
        requests and WebSocket connections it let through (the node said
        200, or the check failed open) whose app call has not returned,
        against ``capacity``. The node's load signal is then at least
        in_flight / capacity, 1.0 being full, and the cluster switches
        DEGRADED and back by it. Default None: no reports.
    admin_token
        The node's admin token (its ``-admin-token`` flag or
        ``ADMIN_TOKEN``), which load reports need. Give it with
        ``capacity``. A node that refuses it logs an ERROR on the
        "tierlimit" logger, at most once a minute; requests are not
        affected.
    report_interval
        Seconds between load reports, more than 0 and less than 2: the
        node counts a report for 2 seconds, then counts the load unknown.
        Default 0.5. The reports start with the ASGI lifespan startup, or
        with the first request, in its event loop, and stop with
        ``lifespan.shutdown.complete`` (or ``close``).
    queue_wait
        With ``capacity``: at most ``capacity`` admitted HTTP requests run
        in the app at once, and the others wait here, up to
        ``queue_wait`` seconds (above 0, at most 3600), the tiers the node
        marks sheddable (``Tierlimit-Sheddable: true``) behind the others.
        When a load report's answer says DEGRADED, the sheddable requests
        still waiting get 503 ``shed``; one that waits ``queue_wait`` gets
        503 ``queue_timeout``. Default None: requests go to the app at once.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        node: str = "http://127.0.0.1:8080",
        timeout: float = 0.1,
        fail_open: bool = True,
        exclude: Iterable[str] = (),
        max_connections: int = 64,
        capacity: Optional[int] = None,
        admin_token: Optional[str] = None,
        report_interval: float = 0.5,
        queue_wait: Optional[float] = None,
    ) -> None:
        self.app = app
        u = urlsplit(node)
        if u.scheme != "http":
            raise ValueError(f"node {node!r}: the scheme must be http, as in http://127.0.0.1:8080")
        if not u.hostname:
            raise ValueError(f"node {node!r}: no host")
        if u.username is not None or u.query or u.fragment:
            raise ValueError(f"node {node!r}: give the base URL only, without user, query or fragment")
        try:
            port = u.port or 80
        except ValueError as e:
            raise ValueError(f"node {node!r}: {e}") from None
        path = u.path.rstrip("/") + "/authorize"
        self._settle_path = u.path.rstrip("/") + "/system/settle"
        load_path = u.path.rstrip("/") + "/system/load"
        if not re.fullmatch(r"[\x21-\x7e]+", path):
            raise ValueError(f"node {node!r}: the path must be printable ASCII")
        if not (isinstance(timeout, (int, float)) and 0 < timeout < float("inf")):
            raise ValueError(f"timeout {timeout!r}: want a positive number of seconds")
        if max_connections < 1:
            raise ValueError(f"max_connections {max_connections!r}: want at least 1")
        _check_report_options(capacity, admin_token, report_interval)
        _check_queue_wait(queue_wait, capacity)
        if isinstance(exclude, str):
            raise ValueError("exclude: give an iterable of path prefixes, such as ('/healthz',)")
        self.node = node
        self.timeout = float(timeout)
        self.fail_open = bool(fail_open)
        self.exclude = tuple(exclude)
        for prefix in self.exclude:
            if not isinstance(prefix, str) or not prefix.startswith("/"):
                raise ValueError(f"exclude: {prefix!r} is not a path starting with /")
        # A path is excluded if it is one of these, or under one of them.
        self._excluded = frozenset(p.rstrip("/") or "/" for p in self.exclude)
        self._excluded_under = tuple(p.rstrip("/") + "/" for p in self.exclude)
        self.max_connections = max_connections
        self._host = u.hostname
        self._port = port
        self._host_header = u.netloc
        self._path = path
        self._client: Optional[NodeClient] = None
        self._outage = _Outage(node, self.fail_open)
        # Requests let through (admitted, or failed open) whose app call has
        # not returned.
        self._in_flight = 0
        self.capacity = capacity
        self.report_interval = float(report_interval)
        self._reporter: Optional[LoadReporter] = None
        # With queue_wait: at most capacity app calls at once, the others
        # held here, paid first (a queue per event loop, made when needed).
        self.queue_wait = None if queue_wait is None else float(queue_wait)
        self._queue: Optional[SlotQueue] = None
        self._queue_loop: Optional[asyncio.AbstractEventLoop] = None
        self._status = ""  # the node's health status, as its last load report's answer said
        if capacity is not None and admin_token is not None:
            self._reporter = LoadReporter(
                node=node,
                host=self._host,
                port=port,
                host_header=self._host_header,
                path=load_path,
                token=admin_token,
                capacity=capacity,
                interval=self.report_interval,
                in_flight=lambda: self._in_flight,
                on_status=self._on_status,
            )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            if kind == "lifespan":
                await self.app(scope, receive, self._lifespan_send(send))
            else:
                await self.app(scope, receive, send)
            return
        if self._reporter is not None:
            self._reporter.start()  # nothing to do once it runs in this loop
        if self._excluded_under and (scope["path"] in self._excluded or scope["path"].startswith(self._excluded_under)):
            await self.app(scope, receive, send)
            return
        keys, problem = api_keys(scope["headers"])
        if problem is not None:
            await _refuse(kind, scope, receive, send, 401, _JSON_HEADERS, _error_body("invalid_api_key", problem))
            return
        estimate: Optional[int] = None
        if kind == "http":
            estimate, problem = _estimate(scope["headers"])
            if problem is not None:
                await _refuse(kind, scope, receive, send, 400, _JSON_HEADERS, _error_body("invalid_cost", problem))
                return
        answer = await self._ask(keys, estimate, kind == "http")
        app_send = send
        reservation: Optional[bytes] = None
        job: Optional[_Job] = None
        if answer is None:
            if not self.fail_open:
                await _refuse(kind, scope, receive, send, 503, _UNAVAILABLE_HEADERS, _UNAVAILABLE_BODY)
                return
        elif answer.status != 200:
            headers = [h for h in answer.headers if h[0] in _REFUSAL_HEADERS]
            await _refuse(kind, scope, receive, send, answer.status, headers, answer.body)
            return
        elif kind == "http":
            extra = [h for h in answer.headers if h[0] in _RATE_HEADERS]
            reservation = next((v for k, v in answer.headers if k == b"tierlimit-reservation"), None)
            if reservation is not None:
                job = _Job()
            app_send = _adding_headers(send, extra, job)
        # Admitted, or failed open: either way the app runs it, once the
        # queue (if any) gives it a slot. Waiting counts as load.
        queue = self._queue_here() if kind == "http" else None
        self._in_flight += 1
        try:
            if queue is None:
                await self.app(scope, receive, app_send)
                return
            sheddable = answer is not None and (b"tierlimit-sheddable", b"true") in answer.headers
            why = await queue.enter(sheddable)
            if why is not None:
                if job is not None:
                    job.failed = True  # it never ran: its cost and slot go back
                extra = [h for h in answer.headers if h[0] in _RATE_HEADERS] if answer is not None else []
                await _refuse(kind, scope, receive, send, 503, *self._queue_refusal(why, extra))
                return
            try:
                await self.app(scope, receive, app_send)
            finally:
                queue.leave()
        except BaseException:
            if job is not None:
                job.failed = True
            raise
        finally:
            self._in_flight -= 1
            if reservation is not None:
                assert job is not None
                await self._settle(keys[0], reservation, job)

    def _queue_here(self) -> Optional[SlotQueue]:
        """The queue of the running loop, made if need be; None without
        queue_wait."""
        if self.queue_wait is None:
            return None
        loop = asyncio.get_running_loop()
        if self._queue is None or self._queue_loop is not loop:
            assert self.capacity is not None
            self._queue, self._queue_loop = SlotQueue(self.capacity, self.queue_wait), loop
        return self._queue

    def _queue_refusal(self, why: str, rate_headers: List[Header]) -> Tuple[List[Header], bytes]:
        """The 503's headers and body for a request the queue refused."""
        if why == SHED:
            retry = _window_of(rate_headers)
            body = _error_body(
                "shed", "the cluster is DEGRADED: this tier's requests that were still waiting for a slot are refused"
            )
        else:
            assert self.queue_wait is not None
            retry = max(1, math.ceil(self.queue_wait))
            body = _error_body("queue_timeout", f"waited {self.queue_wait:g}s for a slot: this instance is full")
        return _JSON_HEADERS + rate_headers + [(b"retry-after", str(retry).encode())], body

    def _on_status(self, status: str) -> None:
        """Takes the status a load report's answer says is in force: going
        DEGRADED sheds the sheddable requests waiting in the queue."""
        was, self._status = self._status, status
        if status == "DEGRADED" and was != "DEGRADED" and self._queue is not None:
            if self._queue_loop is asyncio.get_running_loop():
                self._queue.shed()

    async def _settle(self, key: bytes, reservation: bytes, job: "_Job") -> None:
        """Settles the request's reservation at the node: at the cost the
        app reported, else failed (a 5xx, or an exception) or not. A
        settle the node does not take is logged; the reservation then ends
        at the node's -max-job-duration, its estimate standing."""
        if not _VALID_KEY.fullmatch(reservation):
            logger.warning("tierlimit: the node named a reservation that cannot be sent back; it ends at its deadline")
            return
        try:
            answer = await self._node_client().settle(key, reservation, job.cost, job.failed)
        except NodeError as e:
            logger.warning("tierlimit: could not settle a reservation at %s: %s; it ends at its deadline", self.node, e)
            return
        if answer.status != 204:
            logger.warning("tierlimit: the node refused a settle (%d): %s", answer.status, answer.body[:200])

    def _node_client(self) -> NodeClient:
        """The client to the node in the running loop, made if need be."""
        loop = asyncio.get_running_loop()
        client = self._client
        if client is None or client.loop is not loop or client.closed:
            client = self._client = NodeClient(
                self._host,
                self._port,
                timeout=self.timeout,
                host_header=self._host_header,
                path=self._path,
                settle_path=self._settle_path,
                max_connections=self.max_connections,
            )
        return client

    async def _ask(self, keys: List[bytes], estimate: Optional[int] = None, settle_later: bool = False) -> Optional[Answer]:
        """The node's 200 or 4xx answer, or None when it failed (logged)."""
        loop = asyncio.get_running_loop()
        client = self._node_client()
        try:
            answer = await client.authorize(keys, estimate, settle_later)
        except NodeError as e:
            self._outage.failed(loop.time(), str(e))
            return None
        if answer.status != 200 and not 400 <= answer.status < 500:
            self._outage.failed(loop.time(), f"it answered {answer.status}")
            return None
        if self._outage.down:
            self._outage.answered(loop.time())
        return answer

    def close(self) -> None:
        """Closes the connections to the node and stops the load reports.
        A later request opens new connections and starts the reports again."""
        client, self._client = self._client, None
        if client is not None:
            client.close()
        if self._reporter is not None:
            self._reporter.stop()

    def _lifespan_send(self, send: Send) -> Send:
        async def lifespan_send(message: Message) -> None:
            kind = message["type"]
            if kind in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                if self._reporter is not None:
                    await self._reporter.aclose()
                self.close()
            elif kind == "lifespan.startup.complete" and self._reporter is not None:
                # Report from the start: an idle instance is idle, not unknown.
                self._reporter.start()
            await send(message)

        return lifespan_send


def _check_report_options(capacity: Any, admin_token: Any, report_interval: Any) -> None:
    """Raises ValueError naming what is wrong with the load report options."""
    if capacity is not None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or not 1 <= capacity <= _MAX_CAPACITY:
            raise ValueError(
                f"capacity {capacity!r}: want the jobs the app runs at once, a whole number from 1 to {_MAX_CAPACITY:,}"
            )
    if admin_token is not None:
        if not isinstance(admin_token, str) or not admin_token:
            raise ValueError(f"admin_token {admin_token!r}: want the node's admin token, a non-empty string")
        if len(admin_token) > _MAX_ADMIN_TOKEN:
            raise ValueError(f"admin_token: {len(admin_token)} characters, more than the node reads ({_MAX_ADMIN_TOKEN})")
        if not _ADMIN_TOKEN.fullmatch(admin_token):
            raise ValueError("admin_token: want printable ASCII, without spaces at either end")
    if (capacity is None) != (admin_token is None):
        given, missing = ("capacity", "admin_token") if admin_token is None else ("admin_token", "capacity")
        raise ValueError(
            f"{given} without {missing}: load reports need both, the app's capacity and the node's admin token"
        )
    if (
        isinstance(report_interval, bool)
        or not isinstance(report_interval, (int, float))
        or not 0 < report_interval < _REPORT_STALE
    ):
        raise ValueError(
            f"report_interval {report_interval!r}: want more than 0 and less than {_REPORT_STALE:g} seconds "
            f"(the node counts a report for {_REPORT_STALE:g} s)"
        )


def _check_queue_wait(queue_wait: Any, capacity: Any) -> None:
    """Raises ValueError naming what is wrong with queue_wait."""
    if queue_wait is None:
        return
    if (
        isinstance(queue_wait, bool)
        or not isinstance(queue_wait, (int, float))
        or not 0 < queue_wait <= _MAX_QUEUE_WAIT
    ):
        raise ValueError(
            f"queue_wait {queue_wait!r}: want the seconds a request may wait for a slot, above 0, "
            f"at most {_MAX_QUEUE_WAIT:g}"
        )
    if capacity is None:
        raise ValueError(
            "queue_wait without capacity (and admin_token): the queue holds requests beyond the app's capacity"
        )


# The longest queue_wait, as the node's -queue-wait.
_MAX_QUEUE_WAIT = 3600.0

# A window in RateLimit-Policy: ;w=60
_POLICY_WINDOW = re.compile(rb";\s*w=([0-9]{1,9})")


def _window_of(headers: List[Header]) -> int:
    """The window, in seconds, that the node's RateLimit-Policy header
    names; 60 if it names none."""
    for name, value in headers:
        if name == b"ratelimit-policy":
            m = _POLICY_WINDOW.search(value)
            if m:
                return max(1, int(m.group(1)))
    return 60


_UNAVAILABLE_HEADERS = _JSON_HEADERS + [(b"retry-after", b"1")]
_UNAVAILABLE_BODY = _error_body(
    "limiter_unavailable", "the rate limiter is unavailable and this API fails closed; retry in a second"
)


class _Job:
    """What the app's response says about its work: the actual cost it
    reported (its Tierlimit-Cost response header) and whether it failed."""

    __slots__ = ("cost", "failed")

    def __init__(self) -> None:
        self.cost: Optional[int] = None
        self.failed = False


# A cost, as the node takes it: a whole number from 0 to 1e9.
_COST = re.compile(rb"[0-9]{1,10}")
_MAX_COST = 1_000_000_000


def _cost_of(value: bytes) -> Optional[int]:
    """value as a cost, or None if it is not one."""
    v = value.strip(b" \t")
    if not _COST.fullmatch(v) or int(v) > _MAX_COST:
        return None
    return int(v)


def _estimate(headers: Iterable[Tuple[bytes, bytes]]) -> Tuple[Optional[int], Optional[str]]:
    """The request's cost estimate (its Tierlimit-Cost header), or a reason
    to refuse it, in the node's words."""
    values = [v for k, v in headers if len(k) == 14 and k.lower() == b"tierlimit-cost"]
    if not values:
        return None, None
    if len(values) > 1:
        return None, "more than one Tierlimit-Cost header"
    cost = _cost_of(values[0])
    if cost is None:
        shown = values[0].strip(b" \t").decode("latin-1")
        if len(shown) > 32:
            shown = shown[:32] + "..."
        return None, f"Tierlimit-Cost: want a whole number from 0 to 1000000000, got {json.dumps(shown)}"
    return cost, None


def _adding_headers(send: Send, extra: List[Header], job: Optional[_Job] = None) -> Send:
    """send, with extra put in the response's headers in place of any of
    the same names the app set; with job, the app's Tierlimit-Cost is taken
    off the response into job, and its status tells whether it failed."""

    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = []
            for h in message.get("headers", ()):
                name = bytes(h[0]).lower()
                if name in _RATE_HEADERS:
                    continue
                if job is not None and name == b"tierlimit-cost":
                    job.cost = _cost_of(bytes(h[1]))
                    continue
                headers.append(h)
            if job is not None and message.get("status", 200) >= 500:
                job.failed = True
            headers.extend(extra)
            message = dict(message)
            message["headers"] = headers
        await send(message)

    return send_with_headers


async def _refuse(
    kind: str, scope: Scope, receive: Receive, send: Send, status: int, headers: List[Header], body: bytes
) -> None:
    """Answers the request or WebSocket connect with status, headers and
    body, without calling the app."""
    if kind == "http":
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": headers + [(b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
        return
    message = await receive()  # websocket.connect
    if message["type"] != "websocket.connect":
        return  # the client left
    if "websocket.http.response" in (scope.get("extensions") or {}):
        await send(
            {
                "type": "websocket.http.response.start",
                "status": status,
                "headers": headers + [(b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        # 1008 policy violation: refused; 1013 try again later: the limiter is down.
        await send({"type": "websocket.close", "code": 1013 if status == 503 else 1008})
