"""Load reports: the middleware tells the node beside the app how many of
the requests it let through are running, against the jobs the app runs at
once, so that the cluster can switch DEGRADED and back by itself.

Every ``interval`` seconds it POSTs ``{"in_flight": n, "capacity": c}`` to
the node's ``/system/load`` with the node's admin token. The node counts a
report for 2 seconds; after that, with no newer one, it counts this
instance's load unknown (not idle). Nothing waits for a report: one that
fails is logged, at most once a minute for each kind of failure, and the
next goes on at its time.

The reports run on a ``loop.call_at`` timer that starts a short task for
each report, so between reports nothing is pending in the loop but the
timer: a loop that ends without cancelling its tasks has, almost always,
nothing to warn about.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Callable, Dict, Optional

from ._node import Answer, NodeClient, NodeError

logger = logging.getLogger("tierlimit")

# How long the node counts a report (loadctl.DefaultStale), for the log lines.
NODE_STALE_SECONDS = 2.0


def _node_message(answer: Answer) -> str:
    """The node's error message in answer's JSON body, or the body's start."""
    try:
        return str(json.loads(answer.body)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return answer.body[:200].decode("utf-8", "replace").strip() or "no body"


def _status_of(answer: Answer) -> Optional[str]:
    """The health status in a load report's answer ({"status": ...}), or
    None if it has none (a node of an earlier release answers 204)."""
    try:
        status = json.loads(answer.body)["status"]
    except (ValueError, KeyError, TypeError):
        return None
    return status if isinstance(status, str) else None


class _FailureLog:
    """Logs failed reports: at most one line a minute for each kind of
    failure (the node unreachable, and each status it answered), with the
    count of reports of that kind that failed since the last line; and one
    INFO when reports reach the node again after a logged failure. Time is
    a parameter (seconds on any monotonic clock)."""

    def __init__(self, node: str, every: float = 60.0) -> None:
        self.node = node
        self.every = every
        self.logged_at: Dict[str, float] = {}  # kind -> when its last line was logged
        self.unlogged: Dict[str, int] = {}  # kind -> failures since its last line
        self.owed_recovery = False  # a failure was logged since the last report the node took

    def failed(self, now: float, kind: str, level: int, message: str) -> None:
        self.unlogged[kind] = self.unlogged.get(kind, 0) + 1
        last = self.logged_at.get(kind)
        if last is not None and now - last < self.every:
            return
        n = self.unlogged[kind]
        if last is not None and n > 1:
            message += f"; {n} reports failed this way in the last {now - last:.0f} s"
        logger.log(level, "%s", message)
        self.logged_at[kind] = now
        self.unlogged[kind] = 0
        self.owed_recovery = True

    def succeeded(self) -> None:
        if self.owed_recovery:
            self.owed_recovery = False
            logger.info("tierlimit: load reports reach the node %s again", self.node)


class LoadReporter:
    """Reports ``in_flight()`` against ``capacity`` to the node every
    ``interval`` seconds, in the event loop it was started in.

    ``start`` (in a running loop) begins the reports, the first at once,
    and does nothing if they already run in that loop; ``stop`` ends them
    and closes the connection; ``aclose`` also waits for a report under
    way to end. ``sent`` and ``failed`` count the reports the node took
    and those it did not.
    """

    def __init__(
        self,
        *,
        node: str,
        host: str,
        port: int,
        host_header: str,
        path: str,
        token: str,
        capacity: int,
        interval: float,
        in_flight: Callable[[], int],
        on_status: Optional[Callable[[str], None]] = None,
    ) -> None:
        self.node = node
        self.capacity = capacity
        self.interval = interval
        self._in_flight = in_flight
        self._on_status = on_status
        self._host = host
        self._port = port
        self._host_header = host_header
        self._path = path
        self._token = token.encode("ascii")
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._client: Optional[NodeClient] = None
        self._timer: Optional[asyncio.TimerHandle] = None
        self._task: Optional[asyncio.Task] = None  # type: ignore[type-arg]  # the report under way
        self._next = 0.0  # when the next report is due, on the loop's clock
        self._log = _FailureLog(node)
        self.sent = 0
        self.failed = 0

    @property
    def running(self) -> bool:
        return self._loop is not None

    def start(self) -> None:
        """Starts the reports in the running loop, unless they run in it."""
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        self.stop()  # of a loop that ended without a lifespan shutdown
        self._loop = loop
        # Its own connection, so that a report never waits for one of the
        # checks' connections, nor holds one; and the interval (0.1 s at
        # least) as its timeout, since nothing waits for a report.
        self._client = NodeClient(
            self._host,
            self._port,
            timeout=max(self.interval, 0.1),
            host_header=self._host_header,
            load_path=self._path,
            max_connections=1,
        )
        self._next = loop.time()
        self._tick()

    def stop(self) -> None:
        """Ends the reports: the timer, a report under way (cancelled; it
        ends in the loop's next turns) and the connection. After their loop
        was closed it only lets go of them: a closed loop runs nothing more,
        and cannot close a transport (its socket is closed when collected)."""
        if self._loop is not None and self._loop.is_closed():
            self._loop, self._client, self._timer, self._task = None, None, None, None
            return
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None:
            self._task.cancel()
        if self._client is not None:
            self._client.close()
        self._loop, self._client, self._timer, self._task = None, None, None, None

    async def aclose(self) -> None:
        """stop, and waits for a report under way to end, when it runs in
        the running loop."""
        task = self._task
        stopped_here = self._loop is asyncio.get_running_loop()
        self.stop()
        if task is not None and stopped_here:
            await asyncio.wait({task})

    def _tick(self) -> None:
        loop = self._loop
        if loop is None:
            return
        now = loop.time()
        self._next += self.interval
        if self._next <= now:  # the loop was held up: go on from now, without a burst
            self._next = now + self.interval
        self._timer = loop.call_at(self._next, self._tick)
        if self._task is None:  # the last one still running (a slow node): skip this one
            task = loop.create_task(self._report())
            self._task = task
            task.add_done_callback(self._report_done)

    def _report_done(self, task: asyncio.Task) -> None:  # type: ignore[type-arg]
        if self._task is task:
            self._task = None
        if not task.cancelled() and task.exception() is not None:  # _report catches what it expects
            logger.error("tierlimit: a load report failed", exc_info=task.exception())

    async def _report(self) -> None:
        client = self._client
        loop = self._loop
        if client is None or loop is None:
            return
        in_flight = self._in_flight()
        unknown = f"; the node counts this instance's load unknown {NODE_STALE_SECONDS:g} s after the last report it took"
        try:
            answer = await client.report_load(in_flight, self.capacity, self._token)
        except NodeError as e:
            self.failed += 1
            self._log.failed(
                loop.time(), "unreachable", logging.WARNING,
                f"tierlimit: could not report the load to the node {self.node}: {e}{unknown}",
            )
            return
        status = answer.status
        if status == 204 or status == 200:
            self.sent += 1
            self._log.succeeded()
            if status == 200 and self._on_status is not None:
                said_status = _status_of(answer)
                if said_status is not None:
                    self._on_status(said_status)
            return
        self.failed += 1
        said = _node_message(answer)
        if status == 401:
            level = logging.ERROR
            message = (
                f"tierlimit: the node {self.node} refused the load report with 401 ({said}): "
                "admin_token must be the node's admin token (its -admin-token flag or ADMIN_TOKEN)"
            )
        elif status in (404, 405):
            level = logging.ERROR
            message = (
                f"tierlimit: the node {self.node} takes no load reports (POST {self._path} answered {status}: "
                f"{said}): run a node of this package's release, or leave capacity unset"
            )
        elif 400 <= status < 500:
            level = logging.ERROR
            message = (
                f"tierlimit: the node {self.node} refused the load report "
                f'{{"in_flight": {in_flight}, "capacity": {self.capacity}}} with {status} ({said}): '
                "run a node of this package's release"
            )
        else:
            level = logging.WARNING
            message = f"tierlimit: the node {self.node} answered the load report with {status} ({said})"
        self._log.failed(loop.time(), str(status), level, message + unknown)
