"""Submitting a run to an executor (``BaseFlow.submit``) and waiting for a run to end.

``submit`` returns as soon as the run is stored and handed over; nothing about it is lost on the way:

1. the inputs are validated and the executor is built (which checks its configuration): a problem
   here is raised before anything is written;
2. the run row is written ``pending`` (``execution_mode="background"``) and committed - before the
   executor hears of it, so a worker never gets an id that is not in the database yet;
3. the executor enqueues it. If that fails (an unreachable broker), the run is marked ``failed`` with
   the reason and the error raised: never a run left ``pending`` that nobody will execute.

How the run should be executed (model, budget, executor) is kept in ``flow_metadata["background"]``,
next to ``flow_ref``, which tells a worker which class to run.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .errors import FlowEngineError, NotFoundError
from .storage import RunRecord, RunStatus, utcnow

if TYPE_CHECKING:  # pragma: no cover
    from pydantic import BaseModel

    from .flows import BaseFlow
    from .storage import RunStore

EXECUTION_MODE = "background"
_NEVER = datetime(1970, 1, 1, tzinfo=UTC)  # a heartbeat before this is never "stale" for a claim


async def submit(
    flow: BaseFlow,
    inputs: dict[str, Any] | BaseModel | None = None,
    *,
    user_id: uuid.UUID | str | None = None,
    executor: str | None = None,
    model: str | None = None,
    metadata: dict[str, Any] | None = None,
    max_cost: float | None = None,
    max_tokens: int | None = None,
) -> uuid.UUID:
    """Validate ``inputs``, store the run as ``pending`` and hand it to ``executor``; return its id."""
    from .engine import get_engine
    from .executors import ExecutorUnavailable, get_executor
    from .flows import _parse_user_id, flow_reference
    from .jsonable import describe_error, to_jsonable

    validated = flow.validate_inputs(inputs)
    parsed_user = _parse_user_id(user_id)
    engine = get_engine()
    runner = get_executor(executor, engine)
    store = engine.store
    background = {"executor": runner.name, "model": model, "max_cost": max_cost, "max_tokens": max_tokens}
    record = RunRecord(
        user_id=parsed_user,
        flow_name=flow.flow_name,
        status=RunStatus.PENDING.value,
        execution_mode=EXECUTION_MODE,
        total_steps=flow.total_steps,
        inputs=to_jsonable(validated),
        flow_metadata={
            "flow_ref": flow_reference(type(flow)),
            **(to_jsonable(metadata) if metadata else {}),
            "background": background,
        },
    )
    flow.run_id = record.id
    await store.create_run(record)
    try:
        await runner.enqueue(record, type(flow))
    except BaseException as exc:
        reason = str(exc) if isinstance(exc, ExecutorUnavailable) else describe_error(exc)
        message = f"could not submit run {record.id} to executor '{runner.name}': {reason}"
        await _fail_pending(store, record.id, message)
        if isinstance(exc, FlowEngineError | asyncio.CancelledError | KeyboardInterrupt):
            raise
        raise ExecutorUnavailable(message) from exc
    return record.id


async def _fail_pending(store: RunStore, run_id: uuid.UUID, message: str) -> None:
    """Mark a run failed if nobody took it: claiming it first makes this safe against a worker that
    got the message after all (then the claim fails and the worker's execution stands)."""
    if await store.claim_run(run_id, "submitter", _NEVER):
        now = utcnow()
        await store.update_run(
            run_id, {"status": RunStatus.FAILED.value, "error_message": message, "completed_at": now}
        )


# -- waiting ------------------------------------------------------------------------------------
def run_has_ended(run: RunRecord) -> bool:
    """Completed, failed or cancelled. A crashed run has ended too - unless it is a background run of
    an executor whose workers take over the runs of dead workers (they will resume it)."""
    if run.status in (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED):
        return True
    from .resume import display_status

    if display_status(run) != RunStatus.CRASHED:
        return False
    return not will_be_taken_over(run)


def will_be_taken_over(run: RunRecord) -> bool:
    """A background run of an executor with workers (not ``local``, which died with its process)."""
    if run.execution_mode != EXECUTION_MODE:
        return False
    name = ((run.flow_metadata or {}).get("background") or {}).get("executor")
    try:
        from .executors import executor_info

        return not executor_info(str(name)).in_process
    except FlowEngineError:
        return False


def _load(store: RunStore, run_id: uuid.UUID | str) -> RunRecord:
    resolved = run_id if isinstance(run_id, uuid.UUID) else store.resolve_run_id(str(run_id))
    run = store.get_run(resolved)
    if run is None:
        raise NotFoundError(f"no run with id {run_id}")
    return run


class RunPoller:
    """One wait: the run is read until it has ended, fast at first (a short run is reported at once),
    then every ``poll_interval`` seconds; ``TimeoutError`` after ``timeout`` seconds."""

    def __init__(self, run_id: uuid.UUID | str, timeout: float | None = None, poll_interval: float = 1.0):
        from .engine import get_engine

        self.store = get_engine().store
        self.run_id = run_id
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.poll_interval = poll_interval
        self.delay = 0.02

    def check(self) -> tuple[RunRecord, float | None]:
        """The run, and how long to sleep before reading it again (None: it has ended)."""
        run = _load(self.store, self.run_id)
        self.run_id = run.id
        if run_has_ended(run):
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
