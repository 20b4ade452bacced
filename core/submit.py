"""Background runs from the caller's side: submit one to an executor and wait for a run to end.

``BaseFlow.submit`` (``flow_runner.submit``) stores the run ``pending`` and hands it to an executor;
``wait_for_run`` / ``wait_for_run_blocking`` poll the store until ``flow_runner.has_ended`` says so.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from .engine import get_engine
from .flow_runner import has_ended
from .storage import RunRecord

__all__ = ["RunPoller", "run_has_ended", "wait_for_run", "wait_for_run_blocking"]

run_has_ended = has_ended  # the name this module always had


class RunPoller:
    """One wait: the run is read until it has ended, fast at first (a short run is reported at once),
    then every ``poll_interval`` seconds; ``TimeoutError`` after ``timeout`` seconds."""

    def __init__(self, run_id: uuid.UUID | str, timeout: float | None = None, poll_interval: float = 1.0):
        self.store = get_engine().store
        self.run_id = run_id
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.poll_interval = poll_interval
        self.delay = 0.02

    def check(self) -> tuple[RunRecord, float | None]:
        """The run, and how long to sleep before reading it again (None: it has ended)."""
        run = self.store.load_run(self.run_id)
        self.run_id = run.id
        if has_ended(run):
            return run, None
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"run {run.id} has not ended after {self.timeout:g}s; it is {run.status}")
            sleep = min(self.delay, left)
        else:
            sleep = self.delay
        self.delay = min(self.delay * 2, self.poll_interval)
        return run, sleep


def wait_for_run_blocking(
    run_id: uuid.UUID | str, *, timeout: float | None = None, poll_interval: float = 1.0
) -> RunRecord:
    """Block until the run has ended (polling the database); return it. ``TimeoutError`` after
    ``timeout`` seconds."""
    poll = RunPoller(run_id, timeout, poll_interval)
    while True:
        run, sleep = poll.check()
        if sleep is None:
            return run
        time.sleep(sleep)


async def wait_for_run(run_id: uuid.UUID | str, *, poll_interval: float = 1.0) -> RunRecord:
    """``await`` until the run has ended (polling the database); return it. Works for every executor,
    ``local`` included. Bound it with ``async with asyncio.timeout(seconds):``."""
    poll = RunPoller(run_id, None, poll_interval)
    while True:
        run, sleep = await asyncio.to_thread(poll.check)
        if sleep is None:
            return run
        await asyncio.sleep(sleep)
