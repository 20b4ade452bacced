"""Pacing flow starts: at most ``STARTS_PER_TURN`` flows begin in one event-loop iteration.

``asyncio.gather(*(Flow().execute(...) for _ in range(500)))`` makes 500 tasks that are all ready in
the same iteration, and each runs its start-up bookkeeping (validation, the run record, its first
write) and often its first step up to the LLM request (0.3-1 ms in all) before it first awaits. Run
back to back that is a quarter of a second in which nothing else on the loop (a timer, a web request,
a heartbeat, the answers waiting in the sockets) gets a turn. Past the first ``STARTS_PER_TURN`` in an
iteration, a flow waits for a later one, ``STARTS_PER_TURN`` at a time; the SQL writer wakes the
flows waiting for a batch of commits the same way (``plugins/sql/writer.py``). Throughput does not
change: the same work runs, in more iterations.
"""

from __future__ import annotations

import asyncio
import collections
import weakref

STARTS_PER_TURN = 10  # a flow's start-up and first step until it awaits: 0.3-1 ms each


class _Turns:
    """One loop's starts in the current iteration and the flows waiting for a later one."""

    __slots__ = ("loop", "reset_scheduled", "used", "waiting")

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.used = 0
        self.waiting: collections.deque[asyncio.Future[None]] = collections.deque()
        self.reset_scheduled = False

    def schedule_reset(self) -> None:
        if not self.reset_scheduled:
            self.reset_scheduled = True
            self.loop.call_soon(self.next_turn)

    def next_turn(self) -> None:
        """A new iteration: let the next ``STARTS_PER_TURN`` waiting flows go (they run in the one after)."""
        self.reset_scheduled = False
        self.used = 0
        while self.waiting and self.used < STARTS_PER_TURN:
            future = self.waiting.popleft()
            if not future.done():  # its flow was cancelled while waiting
                future.set_result(None)
                self.used += 1
        if self.used or self.waiting:
            self.schedule_reset()


_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Turns] = weakref.WeakKeyDictionary()


async def start_turn() -> None:
    """Return at once if this iteration has started fewer than ``STARTS_PER_TURN`` flows, else wait."""
    loop = asyncio.get_running_loop()
    turns = _turns.get(loop)
    if turns is None:
        turns = _turns[loop] = _Turns(loop)
    if turns.used < STARTS_PER_TURN and not turns.waiting:
        turns.used += 1
        turns.schedule_reset()
        return
    future = loop.create_future()
    turns.waiting.append(future)
    turns.schedule_reset()
    await future
