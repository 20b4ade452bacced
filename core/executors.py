"""Run executors: where a submitted run goes, and how a run handed to one is executed safely.

An executor is a plugin (``register_executors``) that only *transports* a run id to something that
calls :func:`execute_submitted` with it: a task in this process (``local``) or a message to a pool of
workers (``celery``). Everything that makes background execution safe is here, shared by every
executor, so a third-party executor (Dramatiq, Ray, ...) gets it for free:

- **The claim.** ``RunStore.claim_run`` is one conditional write (pending, crashed, or running with a
  stale heartbeat -> running, owned by this worker). Brokers deliver *at least once*: a message whose
  worker died is redelivered, and Redis also redelivers a message that stayed unacknowledged longer
  than its visibility timeout, even while its worker is alive. Whatever the broker does, only the
  worker whose claim matched executes the run.
- **Watching.** A delivery that finds its run owned by a live worker (fresh heartbeat) does not run
  it. It keeps the message and watches the run: it returns when the run ends, and claims it if the
  owner's heartbeat stops - so a duplicate delivery is also the safety net if the owner dies later.
- **Resuming.** A run taken over from a dead worker is resumed in place (``flow_runner.resume``): steps it
  completed return their stored outputs, no LLM call is paid twice.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

from . import flow_runner
from .engine import get_engine
from .errors import FlowEngineError
from .executor_base import (
    ExecutorUnavailable,
    RunExecutor,
    executor_info,
    get_executor,
    worker_id,
)
from .flows import BaseFlow
from .jsonable import describe_error
from .resume import flow_class_for
from .storage import RunChanges, RunStatus, utcnow

if TYPE_CHECKING:  # pragma: no cover
    from .engine import Engine
    from .storage import RunRecord

__all__ = [
    "RELEASED",
    "ExecutorUnavailable",
    "RunExecutor",
    "execute_submitted",
    "executor_info",
    "get_executor",
    "worker_id",
]

log = logging.getLogger("flow_engine.executors")

RELEASED = "released"  # what execute_submitted returns when it stopped watching (should_stop)


def __getattr__(name: str) -> str:
    """``DEFAULT_EXECUTOR`` (0.1): the core names no executor now; the default is the one a plugin marks
    (``ExecutorInfo.default``). Kept for this release, with a ``DeprecationWarning``."""
    if name == "DEFAULT_EXECUTOR":
        import warnings

        warnings.warn(
            "flow_engine.executors.DEFAULT_EXECUTOR is deprecated and stops working in the next release; "
            "use `get_engine().plugins.default_executor()`",
            DeprecationWarning,
            stacklevel=2,
        )
        return get_engine().plugins.default_executor() or "local"
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- executing a submitted run ------------------------------------------------------------------
async def execute_submitted(
    run_id: uuid.UUID,
    owner: str,
    *,
    watch: bool = True,
    should_stop: Callable[[], bool] | None = None,
    flow_class: type[BaseFlow] | None = None,
) -> str:
    """Claim the submitted run ``run_id`` for ``owner`` and execute it; return the status it ended with.

    A run that already ended returns its status; one owned by a live worker is watched (``watch``) until
    it ends or its owner's heartbeat stops - then it is claimed and resumed. Without ``watch`` such a
    run returns its status (``"running"``) at once; a watch ends with ``"released"`` once
    ``should_stop()`` is true (a worker shutting down gives the delivery back). A run the store does
    not know returns ``"missing"``. ``flow_class`` skips finding the class from the stored reference.
    """
    engine = get_engine()
    store = engine.store
    watching = False
    run: RunRecord | None = None
    # claim first: the common case (a first delivery of a pending run) costs one write and no read
    while not await store.claim_run(run_id, owner, flow_runner.stale_before()):
        run = await asyncio.to_thread(store.get_run, run_id)
        if run is None:
            log.error("run %s is not in the database %s; nothing to do", run_id, _where(engine))
            return "missing"
        if run.status in flow_runner.FINISHED:
            if not watching:
                log.info("run %s already %s; nothing to do", run_id, run.status)
            return run.status
        if not watch:
            return run.status
        if should_stop is not None and should_stop():
            return RELEASED
        if not watching:
            watching = True
            log.info("run %s is being executed by %s; watching it in case it dies", run_id, run.claimed_by)
        await asyncio.sleep(engine.settings.heartbeat_interval)
    if watching and run is not None:
        log.warning("run %s: its worker %s stopped (no heartbeat); taking it over", run_id, run.claimed_by)
    return await _execute_claimed(engine, run_id, owner, flow_class)


def _load_claimed(engine: Engine, run_id: uuid.UUID) -> tuple[RunRecord | None, bool]:
    """The claimed run, and whether an earlier execution left steps or child runs (then: resume).

    A claim of a run that never started sets ``started_at`` to the same instant as ``last_heartbeat``;
    such a run (not resumed by hand either) has nothing to replay, and the two queries are saved.
    """
    store = engine.store
    run = store.get_run(run_id)
    if run is None:
        return None, False
    if run.started_at == run.last_heartbeat and "resumed" not in (run.flow_metadata or {}):
        return run, False
    return run, bool(store.list_steps(run_id) or store.list_runs(parent_run_id=run_id, limit=1))


async def _execute_claimed(
    engine: Engine, run_id: uuid.UUID, owner: str, flow_class: type[BaseFlow] | None
) -> str:
    # reads are synchronous: off the loop, which other runs share
    run, resumed = await asyncio.to_thread(_load_claimed, engine, run_id)
    if run is None:  # deleted under us
        return "missing"
    try:
        flow = (flow_class or _flow_class(run))()
    except FlowEngineError as exc:  # the flow is not installed (or importable) on this worker
        message = f"worker {owner} cannot run flow '{run.flow_name}': {exc}"
        await _fail(engine, run_id, owner, message)
        log.error("run %s failed: %s", run_id, message)
        return RunStatus.FAILED.value
    options = (run.flow_metadata or {}).get("background") or {}
    budget = {"max_cost": options.get("max_cost"), "max_tokens": options.get("max_tokens")}
    log.info("run %s (%s) %s by %s", run_id, run.flow_name, "resumed" if resumed else "started", owner)
    try:
        if resumed:  # another worker started it and died: completed steps are not run again
            await flow_runner.resume(
                flow,
                run,
                model=options.get("model"),
                max_cost=budget["max_cost"],
                max_tokens=budget["max_tokens"],
            )
        else:
            await flow_runner.run_claimed(flow, run, model=options.get("model"), **budget)
        status = RunStatus.COMPLETED.value
    except Exception as exc:  # recorded on the run by the runner; a failure before it started is not
        await _fail(engine, run_id, owner, describe_error(exc))
        ended = await asyncio.to_thread(engine.store.get_run, run_id)
        status = ended.status if ended is not None else "missing"
    log.info("run %s (%s) %s", run_id, run.flow_name, status)
    return status


async def _fail(engine: Engine, run_id: uuid.UUID, owner: str, message: str) -> None:
    """Mark the run failed unless the runner already recorded how it ended (or another worker owns it)."""
    run = await asyncio.to_thread(engine.store.get_run, run_id)
    if run is None or run.status != RunStatus.RUNNING.value or run.claimed_by != owner:
        return
    now = utcnow()
    changes: RunChanges = {
        "status": RunStatus.FAILED.value,
        "error_message": message,
        "completed_at": now,
        "last_heartbeat": now,
    }
    await engine.store.update_run(run_id, changes)


async def execute_claimed(run_id: uuid.UUID, owner: str, flow_class: type[BaseFlow] | None = None) -> str:
    """Execute a run that ``owner`` has already claimed (``RunStore.claim_run``): started, or resumed
    if an earlier execution left steps; return the status it ended with. For an executor that claims
    runs itself, e.g. a worker taking over the runs of a dead one."""
    from .engine import get_engine

    return await _execute_claimed(get_engine(), run_id, owner, flow_class)


_classes: dict[tuple[str | None, str], type[BaseFlow]] = {}


def _flow_class(run: RunRecord) -> type[BaseFlow]:
    """``flow_class_for`` (the stored ``module:Class`` / ``file.py:Class``, else the registered name),
    cached: a worker runs the same few flows thousands of times and entry points are slow to scan."""
    key = ((run.flow_metadata or {}).get("flow_ref"), run.flow_name)
    cls = _classes.get(key)
    if cls is None:
        cls = _classes[key] = flow_class_for(run)
    return cls


def _where(engine: Engine) -> str:
    from .llm.redact import redact_url  # the LLM package is heavy; only this log line needs it

    return str(redact_url(engine.database_url))
