"""Taking over the runs of dead workers: what a delivery does, and the scan every worker makes.

Why a scan: a broker gives a dead worker's messages to another worker late (Redis: after the
visibility timeout, an hour by default) or, for a run nobody ever received, never. The database knows
sooner: a running run's heartbeat stops when its worker dies. So every worker, once in each
``FLOW_ENGINE_RECOVERY_INTERVAL`` (at a random moment in its second half, so that many workers spread
their queries), asks the store for background runs of this executor that are

- ``running`` with a heartbeat older than ``FLOW_ENGINE_STALE_AFTER``: their worker died; or
- ``pending`` for longer than ``FLOW_ENGINE_RECOVERY_PENDING_AFTER`` while nothing waits in the
  queue: their message was lost (a submitter that died before publishing, a worker that died holding
  it before claiming it).

and takes over as many as it has free slots for, each through the one atomic ``claim_run``: of two
workers that try, one gets the run; a live worker's run (fresh heartbeat) is never claimable. A run
taken over is resumed in place: completed steps are not run again. Each takeover is logged and stored
in the run's ``flow_metadata["takeovers"]`` (``flow show``): who took it, from whom, how long the
owner had been silent.

A delivery (the message, first or again) claims only a pending run; it finds a stale running one
taken over the same way, and anything else - running on a live worker, already ended - it leaves
alone, and its message is acknowledged. So a message delivered again after a takeover does nothing.
A run taken over ``FLOW_ENGINE_RECOVERY_MAX_TAKEOVERS`` times is failed instead: a run that kills
every worker it lands on must not go round the whole pool.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from flow_engine.plugin import RunStatus
from flow_engine.storage import utcnow

if TYPE_CHECKING:  # pragma: no cover
    from flow_engine.engine import Engine
    from flow_engine.flows import BaseFlow
    from flow_engine.plugin import RunChanges, RunRecord

    from .settings import CelerySettings

log = logging.getLogger("flow_engine.executors.celery")

EXECUTOR = "celery"
NEVER = datetime.min.replace(tzinfo=UTC)  # as claim_run's stale_before: no heartbeat is that old
SCAN_LIMIT = 100  # candidates read per scan; a worker takes at most its free slots of them


def takeovers_of(run: RunRecord) -> list[dict[str, Any]]:
    return list((run.flow_metadata or {}).get("takeovers") or [])


def _since(then: datetime | None, now: datetime) -> float | None:
    return None if then is None else round((now - then).total_seconds(), 1)


async def claim_orphan(
    engine: Engine, run: RunRecord, owner: str, stale_before: datetime, max_takeovers: int
) -> bool:
    """Claim ``run`` (as read by a scan or a delivery: running with a stale heartbeat, or pending) for
    ``owner``, record and log the takeover; True when this worker is now to execute it.

    False when the claim did not match (another worker was quicker, or the owner is alive after all),
    and when the run was taken over ``max_takeovers`` times before: then it is failed instead.
    """
    store = engine.store
    if not await store.claim_run(run.id, owner, stale_before):
        return False
    now = utcnow()
    fresh = await asyncio.to_thread(store.get_run, run.id)  # ours now: nobody else writes it
    if fresh is None:
        return False
    previous = takeovers_of(fresh)
    since_given_up = [t for t in previous if not t.get("gave_up")]
    record: dict[str, Any] = {
        "at": now.isoformat(),
        "by": owner,
        "previous_status": run.status,
        "previous_owner": run.claimed_by,
    }
    if run.status == RunStatus.RUNNING:
        record["last_heartbeat"] = run.last_heartbeat.isoformat() if run.last_heartbeat else None
        record["dead_for_s"] = _since(run.last_heartbeat, now)
    else:
        record["pending_for_s"] = _since(run.created_at, now)
    changes: RunChanges = {}
    if len(since_given_up) >= max_takeovers:
        record["gave_up"] = True
        changes = {
            "status": RunStatus.FAILED.value,
            "completed_at": now,
            "error_message": f"its worker stopped {len(since_given_up) + 1} times while executing it (the "
            f"last: {run.claimed_by}); taken over {len(since_given_up)} times, not again "
            f"(FLOW_ENGINE_RECOVERY_MAX_TAKEOVERS={max_takeovers}). `flow resume {run.id}` tries again",
        }
    metadata = {**(fresh.flow_metadata or {}), "takeovers": [*previous, record]}
    await store.update_run(run.id, {**changes, "flow_metadata": metadata})
    if changes:
        log.error("run %s (%s) failed: %s", run.id, run.flow_name, changes["error_message"])
        return False
    if run.status == RunStatus.RUNNING:
        log.warning(
            "run %s (%s): recovered from %s, dead for %.1fs (last heartbeat %s); taking it over",
            run.id,
            run.flow_name,
            run.claimed_by,
            record["dead_for_s"] or 0.0,
            record["last_heartbeat"],
        )
    else:
        log.warning(
            "run %s (%s): pending for %.0fs with no message waiting; starting it",
            run.id,
            run.flow_name,
            record["pending_for_s"] or 0.0,
        )
    return True


def stale_before(engine: Engine) -> datetime:
    return utcnow() - timedelta(seconds=engine.settings.stale_after)


async def deliver(engine: Engine, run_id: uuid.UUID, owner: str, settings: CelerySettings) -> str:
    """What a delivery of ``run_id`` does; returns the run's status afterwards (or ``"missing"``)."""
    from flow_engine.executors import execute_claimed

    store = engine.store
    # the common case - the first delivery of a pending run - costs one write and no read
    if await store.claim_run(run_id, owner, NEVER):
        return await execute_claimed(run_id, owner)
    run = await asyncio.to_thread(store.get_run, run_id)
    if run is None:
        log.error("run %s is not in the database; nothing to do", run_id)
        return "missing"
    before = stale_before(engine)
    if run.status == RunStatus.RUNNING and run.last_heartbeat is not None and run.last_heartbeat < before:
        if await claim_orphan(engine, run, owner, before, settings.recovery_max_takeovers):
            return await execute_claimed(run_id, owner)
        run = await asyncio.to_thread(store.get_run, run_id) or run
    if run.status == RunStatus.RUNNING:
        log.info("run %s is being executed by %s; nothing to do", run_id, run.claimed_by)
    else:
        log.info("run %s already %s; nothing to do", run_id, run.status)
    return run.status


class Recovery:
    """The scan of one worker process, on its event loop; the runs it takes over execute there too.

    ``free_slots()`` says how many more runs the worker may take now; ``waiting()`` how many messages
    wait in the queue runs are sent to (``None``: this worker does not take that queue, so it leaves
    pending runs alone - their message may be waiting for another kind of worker).
    """

    def __init__(
        self,
        engine: Engine,
        owner: str,
        settings: CelerySettings,
        *,
        free_slots: Callable[[], int],
        waiting: Callable[[], int] | None,
        track: Callable[[uuid.UUID, Coroutine[Any, Any, str]], Coroutine[Any, Any, str]] | None = None,
    ):
        self.engine = engine
        self.owner = owner
        self.settings = settings
        self.free_slots = free_slots
        self.waiting = waiting
        self.track = track  # wraps each run it takes over (the worker stops them on a signal)
        self.executing: set[asyncio.Task[str]] = set()
        self._classes: dict[tuple[Any, str], type[BaseFlow]] = {}
        self._missing: set[tuple[Any, str]] = set()  # flows not installed here, logged once

    async def run(self, stop: asyncio.Event) -> None:
        """Scan once in every interval until ``stop`` is set; a failed scan is logged and retried."""
        from flow_engine.jsonable import describe_error

        interval = self.settings.recovery_interval
        delay = random.uniform(0, interval)  # a worker started with others does not scan with them
        while True:
            try:
                await asyncio.wait_for(stop.wait(), delay)
                return
            except TimeoutError:
                pass
            try:
                await self.scan()
            except Exception as exc:  # the database or broker away for a moment: try the next time
                log.warning("recovery scan failed: %s", describe_error(exc))
            delay = random.uniform(interval / 2, interval)

    async def scan(self) -> list[uuid.UUID]:
        """One scan: claim and start what this worker has room for; return the ids it took over."""
        free = self.free_slots()
        if free <= 0:
            return []
        store, settings = self.engine.store, self.settings
        now = utcnow()
        before = stale_before(self.engine)
        pending_before = now - timedelta(seconds=settings.recovery_pending_after)
        found = await asyncio.to_thread(
            store.list_orphaned_runs,
            EXECUTOR,
            before,
            pending_before if self.waiting is not None else None,
            SCAN_LIMIT,
        )
        stale = [r for r in found if r.status == RunStatus.RUNNING]
        pending = [r for r in found if r.status == RunStatus.PENDING]
        if pending and await self._messages_waiting():
            pending = []  # their messages may be among those waiting: workers will get them
        random.shuffle(stale)  # workers scanning at the same moment try different runs first
        chosen: list[tuple[RunRecord, type[BaseFlow]]] = []
        for run in stale + pending:
            if len(chosen) >= free:
                break
            flow_class = await self._flow_class(run)
            if flow_class is not None:  # else not installed here: a worker that has it will take it
                chosen.append((run, flow_class))
        # all at once: the claims and records of many runs share the store's commits
        taken = await asyncio.gather(*(self._take_over(run, cls, before) for run, cls in chosen))
        return [run_id for run_id in taken if run_id is not None]

    async def _take_over(
        self, run: RunRecord, flow_class: type[BaseFlow], stale_before: datetime
    ) -> uuid.UUID | None:
        max_takeovers = self.settings.recovery_max_takeovers
        if not await claim_orphan(self.engine, run, self.owner, stale_before, max_takeovers):
            return None
        self._start(run.id, flow_class)
        return run.id

    async def _messages_waiting(self) -> bool:
        assert self.waiting is not None
        try:
            return await asyncio.to_thread(self.waiting) > 0
        except Exception as exc:  # the broker cannot say: leave pending runs to it
            log.warning("recovery scan: cannot count the queue's messages (%s); pending runs left alone", exc)
            return True

    async def _flow_class(self, run: RunRecord) -> type[BaseFlow] | None:
        from flow_engine.plugin import FlowEngineError
        from flow_engine.resume import flow_class_for

        key = ((run.flow_metadata or {}).get("flow_ref"), run.flow_name)
        if key not in self._classes:
            try:  # imports user code, perhaps slowly: not on the loop
                self._classes[key] = await asyncio.to_thread(flow_class_for, run)
            except FlowEngineError as exc:
                if key not in self._missing:
                    self._missing.add(key)
                    log.info("run %s: flow '%s' not installed here (%s); left to others", run.id, key[1], exc)
                return None
        return self._classes[key]

    def _start(self, run_id: uuid.UUID, flow_class: type[BaseFlow]) -> None:
        from flow_engine.executors import execute_claimed

        work = execute_claimed(run_id, self.owner, flow_class)
        if self.track is not None:
            work = self.track(run_id, work)
        task = asyncio.get_running_loop().create_task(work)
        self.executing.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[str]) -> None:
        self.executing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # the database failed under the run: its heartbeat has stopped, so a scan takes it over
            log.error("a run taken over failed to execute: %s", task.exception())

    async def drain(self) -> None:
        """Wait for the runs this worker took over (a warm shutdown lets them finish)."""
        while self.executing:
            await asyncio.gather(*list(self.executing), return_exceptions=True)
