"""A timeout for calls to in-process providers, with timers shared between calls.

``asyncio.timeout()`` schedules a timer for every call and cancels it after: a timer handle, a copy
of the context, a heap push and, later, the heap's clean-up. A call to the offline model takes a few
milliseconds and that bookkeeping was one of the larger parts of the engine's own work per step
(docs/performance.md). Here a call's deadline is rounded up to a slice of 1/64 of the timeout (at
least 1 ms), and all calls of one event loop due in the same slice share one timer; a call that ends
in time only leaves its slice's set. A call that overruns is cancelled and ``TimeoutError`` is
raised in it, as with ``asyncio.timeout()`` (at most one slice late); a cancellation from elsewhere
stays a cancellation.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from types import TracebackType
from typing import Any

_SLICES_PER_TIMEOUT = 64
_MIN_SLICE = 0.001


class _LoopTimers:
    """One event loop's calls waiting for their slice's timer, by slice."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.due: dict[tuple[float, int], set[Deadline]] = {}

    def watch(self, deadline: Deadline) -> None:
        key = deadline.slice_key
        waiting = self.due.get(key)
        if waiting is None:
            waiting = self.due[key] = set()
            self.loop.call_at(key[0] * key[1], self._expire, key)
        waiting.add(deadline)

    def forget(self, deadline: Deadline) -> None:
        waiting = self.due.get(deadline.slice_key)
        if waiting is not None:
            waiting.discard(deadline)

    def _expire(self, key: tuple[float, int]) -> None:
        for deadline in self.due.pop(key, ()):
            deadline.expire()


_timers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopTimers] = weakref.WeakKeyDictionary()
# the last loop's timers: nearly every call is on the same loop as the last
_last: list[_LoopTimers | None] = [None]


def _timers_of(loop: asyncio.AbstractEventLoop) -> _LoopTimers | None:
    last = _last[0]
    if last is not None and last.loop is loop:
        return last
    try:
        timers = _timers.get(loop)
        if timers is None:
            timers = _timers[loop] = _LoopTimers(loop)
    except TypeError:  # a loop that takes no weak reference: asyncio's own timeout then
        return None
    _last[0] = timers
    return timers


class Deadline:
    """``async with Deadline(seconds):`` raises ``TimeoutError`` in the block once ``seconds`` passed."""

    __slots__ = ("cancelling", "expired", "fallback", "seconds", "slice_key", "task", "timers")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self.fallback: Any = None

    async def __aenter__(self) -> Deadline:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        timers = _timers_of(loop)
        if timers is None or task is None:
            self.fallback = asyncio.timeout(self.seconds)
            await self.fallback.__aenter__()
            return self
        size = max(_MIN_SLICE, self.seconds / _SLICES_PER_TIMEOUT)
        self.slice_key = (size, math.ceil((loop.time() + self.seconds) / size))
        self.task = task
        self.cancelling = task.cancelling()
        self.timers = timers
        timers.watch(self)
        return self

    def expire(self) -> None:
        self.expired = True
        self.task.cancel()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.fallback is not None:
            await self.fallback.__aexit__(exc_type, exc, tb)
            return
        self.timers.forget(self)
        # as asyncio.timeout(): our cancel request is taken back; a CancelledError with no other
        # request pending was ours, and becomes the TimeoutError
        if self.expired and self.task.uncancel() <= self.cancelling and exc_type is asyncio.CancelledError:
            raise TimeoutError(f"no answer within {self.seconds:g} s") from exc
