"""The paid-first queue: at most ``capacity`` requests run in the app at
once; the others wait here, a sheddable tier's (the node says so on
/authorize's answer: ``Tierlimit-Sheddable: true``) behind every other,
each class in the order it came. A request waits at most ``wait`` seconds;
``shed`` refuses every sheddable request waiting, when the cluster goes
DEGRADED, so that work admitted before the switch does not run ahead of
the paid tiers'.

A queue belongs to one event loop, the one it is first used in.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Deque, Optional, Tuple

# Why a request got no slot.
SHED = "shed"
TIMEOUT = "queue_timeout"

class SlotQueue:
    """Slots for the app's work, handed out paid first.

    ``enter`` returns None when the caller holds a slot, which it gives back
    with ``leave``; else SHED or TIMEOUT, and the caller holds nothing.
    ``waited``, ``timed_out`` and ``shed_total`` count the requests that got
    a slot after waiting and those refused.
    """

    def __init__(self, capacity: int, wait: float) -> None:
        self.wait = wait
        self._free = capacity
        # Waiters by class: the tiers DEGRADED leaves alone, then the
        # sheddable ones. A waiter that is done (refused, timed out, or its
        # request cancelled) is skipped when it reaches the front.
        self._waiting: Tuple[Deque[asyncio.Future[Optional[str]]], Deque[asyncio.Future[Optional[str]]]] = (
            deque(),
            deque(),
        )
        self.waited = 0
        self.timed_out = 0
        self.shed_total = 0

    @property
    def free(self) -> int:
        """Slots no request holds."""
        return self._free

    def waiting(self, sheddable: bool) -> int:
        """Requests of the class waiting now."""
        return sum(1 for f in self._waiting[sheddable] if not f.done())

    async def enter(self, sheddable: bool) -> Optional[str]:
        if self._free > 0:
            self._free -= 1
            return None
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Optional[str]] = loop.create_future()
        self._waiting[sheddable].append(fut)
        timer = loop.call_later(self.wait, _expire, fut)
        try:
            why = await fut
        except asyncio.CancelledError:
            # The request ended while it waited. If a slot was handed to it
            # in the same moment, it goes back.
            if fut.done() and not fut.cancelled() and fut.result() is None:
                self.leave()
            raise
        finally:
            timer.cancel()
        if why is None:
            self.waited += 1
        elif why == TIMEOUT:
            self.timed_out += 1
        return why

    def leave(self) -> None:
        """Gives a slot back: to the first waiter of the first class that
        has one, else to the free slots."""
        for waiting in self._waiting:
            while waiting:
                fut = waiting.popleft()
                if not fut.done():
                    fut.set_result(None)
                    return
        self._free += 1

    def shed(self) -> int:
        """Refuses every sheddable request waiting now with SHED, and
        returns how many."""
        waiting = self._waiting[True]
        n = 0
        while waiting:
            fut = waiting.popleft()
            if not fut.done():
                fut.set_result(SHED)
                n += 1
        self.shed_total += n
        return n


def _expire(fut: asyncio.Future[Optional[str]]) -> None:
    if not fut.done():
        fut.set_result(TIMEOUT)
