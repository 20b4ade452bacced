"""The flow runner: one run of a flow from its start to its end (the counterpart of ``step_runner``).

It writes the run row from the moment the run starts, sets the run context, keeps the heartbeat,
applies the budget, and records how the run ended (completed, failed, cancelled, waiting) with the
``before_flow`` / ``after_flow`` / ``on_flow_error`` / ``on_flow_stop`` hooks. ``BaseFlow`` is the user
API on top of it; ``resume``, ``submit`` and ``executors`` call the public functions here:

- :func:`start` runs a flow now (``BaseFlow.execute``), :func:`submit` stores a run ``pending`` and
  hands it to an executor (``BaseFlow.submit``), :func:`run_claimed` runs a submitted run an executor
  claimed, :func:`resume` runs a stored run again in place, replaying its completed steps;
- :func:`has_ended`, :func:`is_stale` and :func:`display_status` say where a stored run stands.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from .context import RunContext, RunTotals, current_run, current_step
from .engine import get_engine
from .errors import (
    FlowEngineError,
    InputValidationError,
    ResumeMismatch,
    RunCancelled,
    RunTaken,
    RunWaiting,
    UsageError,
)
from .executor_base import ExecutorUnavailable, executor_info, get_executor
from .jsonable import NotStorable, describe_error, storable, to_jsonable
from .pacing import start_turn
from .runtime_info import FlowEvent
from .step_runner import report_hook
from .storage import RunChanges, RunRecord, RunStatus, RunStore, StepRecord, utcnow

if TYPE_CHECKING:  # pragma: no cover
    from .engine import Engine
    from .flows import BaseFlow

EXECUTION_MODE = "background"  # ``execution_mode`` of a submitted run
# statuses that nothing changes any more (except a resume asked for by hand)
FINISHED = frozenset({RunStatus.COMPLETED.value, RunStatus.FAILED.value, RunStatus.CANCELLED.value})
_NEVER = datetime(1970, 1, 1, tzinfo=UTC)  # a heartbeat before this is never "stale" for a claim
_RUN_OPTIONS = "run_options"
_CACHE = "cache"


# -- where a stored run stands --------------------------------------------------------------------
def stale_before(threshold_seconds: float | None = None) -> datetime:
    settings = get_engine().settings
    return utcnow() - timedelta(seconds=threshold_seconds or settings.stale_after)


def is_stale(run: RunRecord, threshold_seconds: float | None = None) -> bool:
    """A run that says running but whose heartbeat is older than the threshold (its process died)."""
    if run.status != RunStatus.RUNNING:
        return False
    return run.last_heartbeat is None or run.last_heartbeat < stale_before(threshold_seconds)


def display_status(run: RunRecord, threshold_seconds: float | None = None) -> str:
    """The status to show a person: a stale running run is shown as crashed."""
    return RunStatus.CRASHED.value if is_stale(run, threshold_seconds) else run.status


def will_be_taken_over(run: RunRecord) -> bool:
    """A background run of an executor with workers (not ``local``, which died with its process)."""
    if run.execution_mode != EXECUTION_MODE:
        return False
    name = ((run.flow_metadata or {}).get("background") or {}).get("executor")
    try:
        return not executor_info(str(name)).in_process
    except FlowEngineError:
        return False


def has_ended(run: RunRecord) -> bool:
    """The one definition of "the run has ended": completed, failed or cancelled; crashed too, unless
    it is a background run of an executor whose workers take over the runs of dead workers."""
    if run.status in FINISHED:
        return True
    if display_status(run) != RunStatus.CRASHED:
        return False
    return not will_be_taken_over(run)


# -- who runs what ----------------------------------------------------------------------------------
def parse_user_id(user_id: uuid.UUID | str | None) -> uuid.UUID | None:
    if user_id is None or isinstance(user_id, uuid.UUID):
        return user_id
    try:
        return uuid.UUID(str(user_id))
    except ValueError:
        raise InputValidationError(
            "user_id", [{"loc": ("user_id",), "msg": f"'{user_id}' is not a UUID"}]
        ) from None


def flow_reference(cls: type) -> str:
    """``module:Class`` (or ``path/to/file.py:Class`` for a script) — how ``flow resume`` finds the class."""
    module = sys.modules.get(cls.__module__)
    if cls.__module__ == "__main__" or cls.__module__.startswith("flow_engine_user_flows."):
        path = getattr(module, "__file__", None)
        if path:
            return f"{_resolved(path)}:{cls.__qualname__}"
    return f"{cls.__module__}:{cls.__qualname__}"


@functools.lru_cache(maxsize=256)
def _resolved(path: str) -> Path:
    """A script's absolute path, once per script (every run of its flows records it)."""
    return Path(path).resolve()


def check_budget(max_cost: float | None, max_tokens: int | None) -> None:
    """A budget that could never stop a run (NaN, infinite, negative) is a usage error."""
    if max_cost is not None and not (math.isfinite(max_cost) and max_cost >= 0):
        raise UsageError(f"max_cost must be a finite number of USD >= 0, not {max_cost}")
    if max_tokens is not None and max_tokens < 0:
        raise UsageError(f"max_tokens must be >= 0, not {max_tokens}")


# -- starting a run ---------------------------------------------------------------------------------
async def start(
    flow: BaseFlow,
    inputs: dict[str, Any] | BaseModel | None = None,
    *,
    user_id: uuid.UUID | str | None = None,
    model: str | None = None,
    metadata: dict[str, Any] | None = None,
    max_cost: float | None = None,
    max_tokens: int | None = None,
    cache: bool | None = None,
    batch_id: str | None = None,
    batch_line: int | None = None,
    run_key: str | None = None,
) -> dict[str, Any]:
    """Run ``flow`` now as a recorded run (a child run inside another flow); return its outputs.

    ``cache`` turns the response cache on or off for the run (kept with it for a resume);
    ``batch_id`` files a root run under a ``flow batch`` (``batch_line``: its item's line, which the
    store refuses twice: StorageError); ``run_key`` is a child run's key when the
    caller reserved it (``map``), else the next occurrence of the flow's name in the parent."""
    check_budget(max_cost, max_tokens)
    validated = flow.validate_inputs(inputs)
    parsed_user = parse_user_id(user_id)
    await start_turn()  # many flows started at once take turns (pacing.py)
    engine = get_engine()
    engine.ensure_started()  # a plugin's bad setting fails here, before the run's row is written
    parent = current_run.get()
    if parent is not None and run_key is None:
        run_key = parent.next_child_key(flow.flow_name)
    elif parent is None:
        run_key = None
    if parent is not None and run_key in parent.child_runs:  # resuming: this child ran before
        return await _resume_child(flow, parent, parent.child_runs[run_key], model)
    options = _run_options(model, max_cost, max_tokens) if parent is None else {}
    now = utcnow()
    record = RunRecord(
        user_id=parsed_user if parsed_user is not None or parent is None else parent.user_id,
        flow_name=flow.flow_name,
        parent_run_id=parent.run_id if parent else None,
        run_key=run_key,
        status=RunStatus.RUNNING.value,
        execution_mode="sync",
        total_steps=flow.total_steps,
        started_at=now,
        last_heartbeat=now,
        inputs=to_jsonable(validated),
        flow_metadata={
            "flow_ref": flow_reference(type(flow)),
            **(to_jsonable(metadata) if metadata else {}),
            **options,
            **_cache_option(cache),
        },
        batch_id=batch_id if parent is None else None,
        batch_line=batch_line if parent is None else None,
    )
    flow.run_id = record.id
    await engine.store.create_run(record)
    ctx = _context(flow, engine, record, parent, model, max_cost, max_tokens)
    return await _run_recorded(flow, ctx, validated, metadata=record.flow_metadata)


def _plugin_metadata(engine: Any, flow_name: str) -> dict[str, Any]:
    """What plugins add to a submitted run's ``flow_metadata`` (the ``submit_metadata`` hook)."""
    merged: dict[str, Any] = {}
    for entries in engine.plugins.pm.hook.submit_metadata(flow_name=flow_name):
        merged.update(to_jsonable(entries or {}))
    return merged


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
    cache: bool | None = None,
    batch_id: str | None = None,
    batch_line: int | None = None,
) -> uuid.UUID:
    """Validate ``inputs``, store the run as ``pending`` and hand it to ``executor``; return its id.

    Nothing is lost on the way: bad inputs or a misconfigured executor fail before anything is
    written; the row is committed before the executor hears of it (a worker never gets an id that is
    not stored yet); if handing it over fails, the run is marked ``failed`` with the reason. How the
    run is to be executed (model, budget, executor) is kept in ``flow_metadata["background"]``.
    """
    check_budget(max_cost, max_tokens)
    validated = flow.validate_inputs(inputs)
    parsed_user = parse_user_id(user_id)
    engine = get_engine()
    engine.ensure_started()
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
            **_plugin_metadata(engine, flow.flow_name),
            "background": background,
            **_cache_option(cache),
        },
        batch_id=batch_id,
        batch_line=batch_line,
    )
    flow.run_id = record.id
    await store.create_run(record)
    await hand_over(runner, store, record, type(flow), f"submit run {record.id} to")
    return record.id


async def hand_over(
    runner: Any, store: RunStore, run: RunRecord, flow_class: type[BaseFlow], doing: str
) -> None:
    """Give the stored pending run to the executor; if that fails, the run is marked failed with the
    reason (``doing``: what the message says could not be done)."""
    try:
        await runner.enqueue(run, flow_class)
    except BaseException as exc:
        reason = str(exc) if isinstance(exc, ExecutorUnavailable) else describe_error(exc)
        message = f"could not {doing} executor '{runner.name}': {reason}"
        await _fail_pending(store, run.id, message)
        if isinstance(exc, FlowEngineError | asyncio.CancelledError | KeyboardInterrupt):
            raise
        raise ExecutorUnavailable(message) from exc


async def resubmit(run: RunRecord, flow_class: type[BaseFlow], *, executor: str | None = None) -> bool:
    """Hand a failed, cancelled or crashed root run back to ``executor``'s workers, which resume it in
    place (its completed steps replay); False when another process took it first (it is claimed
    atomically, as ``resume(claim=True)`` claims it). Enqueueing that fails marks the run failed."""
    if run.parent_run_id is not None:
        raise UsageError(f"run {run.id} is a child run; hand back its root run {run.parent_run_id}")
    engine = get_engine()
    engine.ensure_started()
    runner = get_executor(executor, engine)
    store = engine.store
    try:
        if run.status in (RunStatus.FAILED, RunStatus.CANCELLED):
            await _claim_ended(store, run)
        else:
            await _claim_for_resume(store, run, force=False)
    except RunTaken:
        return False
    metadata = dict(run.flow_metadata or {})
    metadata["background"] = {**(metadata.get("background") or {}), "executor": runner.name}
    changes: RunChanges = {
        "status": RunStatus.PENDING.value,
        "claimed_by": None,
        "execution_mode": EXECUTION_MODE,
        "flow_metadata": metadata,
    }
    await store.update_run(run.id, changes)
    handed = run.model_copy(update=dict(changes))
    await hand_over(runner, store, handed, flow_class, f"hand run {run.id} back to")
    return True


async def _fail_pending(store: RunStore, run_id: uuid.UUID, message: str) -> None:
    """Mark a run failed if nobody took it: claiming it first makes this safe against a worker that
    got the message after all (then the claim fails and the worker's execution stands)."""
    if await store.claim_run(run_id, "submitter", _NEVER):
        now = utcnow()
        await store.update_run(
            run_id, {"status": RunStatus.FAILED.value, "error_message": message, "completed_at": now}
        )


async def run_claimed(
    flow: BaseFlow,
    run: RunRecord,
    *,
    model: str | None = None,
    max_cost: float | None = None,
    max_tokens: int | None = None,
) -> dict[str, Any]:
    """The first execution of a submitted run an executor claimed: ``start`` on the existing row."""
    validated = flow.validate_inputs(run.inputs)
    engine = get_engine()
    flow.run_id = run.id
    ctx = _context(flow, engine, run, None, model, max_cost, max_tokens)
    return await _run_recorded(flow, ctx, validated, metadata=run.flow_metadata)


# -- resuming a run ---------------------------------------------------------------------------------
async def resume(
    flow: BaseFlow,
    run: RunRecord | uuid.UUID | str,
    *,
    model: str | None = None,
    max_cost: float | None = None,
    max_tokens: int | None = None,
    parent: RunContext | None = None,
    claim: bool | None = None,
    force: bool | None = None,
    as_fork: bool = False,
) -> dict[str, Any]:
    """Run a stored run of ``flow`` again in place: completed steps return their stored outputs,
    execution goes on live from the first step without one. See ``BaseFlow.resume``. ``as_fork``: the
    first execution of a fork (``flow_engine.fork``), not recorded as a resume.

    With ``claim`` (resuming by hand: ``BaseFlow.resume``, ``flow resume``), a root run that says
    ``running`` or ``crashed`` is claimed first (``RunStore.claim_run``, as executors claim theirs
    before calling this), so a run another process still executes is never resumed beside it;
    ``force`` claims it even with a fresh heartbeat."""
    check_budget(max_cost, max_tokens)
    engine = get_engine()
    engine.ensure_started()
    store = engine.store
    if not isinstance(run, RunRecord):
        run = await asyncio.to_thread(store.load_run, run)
    if run.flow_name != flow.flow_name:
        raise ResumeMismatch(f"run {run.id} is a run of flow '{run.flow_name}', not '{flow.flow_name}'")
    if run.status == RunStatus.COMPLETED:
        flow.run_id = run.id
        return dict(run.outputs or {})
    validated = flow.validate_inputs(run.inputs)
    if claim and parent is None and run.status in (RunStatus.RUNNING, RunStatus.CRASHED):
        await _claim_for_resume(store, run, bool(force))
    elif claim and parent is None and run.status in (RunStatus.FAILED, RunStatus.CANCELLED):
        await _claim_ended(store, run)
    steps, children, spent = await asyncio.to_thread(_history, store, run.id)
    metadata = dict(run.flow_metadata or {})
    if not as_fork:
        history = list(metadata.get("resumed", []))
        history.append(
            {"at": utcnow().isoformat(), "previous_status": run.status, "error": run.error_message}
        )
        metadata["resumed"] = history
    if parent is None:  # a root run keeps its model and budget unless new ones are given
        model, max_cost, max_tokens = _stored_options(run, model, max_cost, max_tokens)
        metadata.pop(_RUN_OPTIONS, None)
        metadata.update(_run_options(model, max_cost, max_tokens))
    await store.prepare_resume(
        run.id,
        {
            "status": RunStatus.RUNNING.value,
            "completed_at": None,
            "error_message": None,
            "last_heartbeat": utcnow(),
            "flow_metadata": metadata,
            **({"started_at": utcnow()} if run.started_at is None else {}),  # a fork's first start
        },
    )
    flow.run_id = run.id
    ctx = _context(
        flow,
        engine,
        run,
        parent,
        model,
        max_cost,
        max_tokens,
        replay={s.step_order: s for s in steps if s.status == RunStatus.COMPLETED},
        child_runs={c.run_key: c for c in children if c.run_key},
    )
    # what its own LLM calls spent so far, from llm_requests: the run row's totals miss a step that
    # was cut off by a crash (and child runs, which add their own when they end or are replayed)
    ctx.totals.add_totals(spent)
    previous_ms = run.execution_time_ms or 0
    return await _run_recorded(flow, ctx, validated, previous_ms=previous_ms, metadata=metadata)


async def _claim_for_resume(store: RunStore, run: RunRecord, force: bool) -> None:
    """Take the run atomically; ``force`` takes it even with a fresh heartbeat (its process is gone)."""
    threshold = utcnow() + timedelta(days=1) if force else stale_before()
    if not await store.claim_run(run.id, f"resume-{uuid.uuid4().hex[:8]}", threshold):
        raise RunTaken(
            f"run {run.id} is being executed by another process (its heartbeat is fresh); "
            "cancel it first, or wait until it is reported crashed"
        )


async def _claim_ended(store: RunStore, run: RunRecord) -> None:
    """Take a failed or cancelled run atomically, so that two processes resuming it at once (two
    ``flow batch --resume`` of one batch) do not both run it; unclaimed on a backend that cannot."""
    try:
        taken = await store.claim_ended_run(run.id, f"resume-{uuid.uuid4().hex[:8]}")
    except NotImplementedError:
        return
    if not taken:
        raise RunTaken(f"run {run.id} is being resumed by another process (it was {run.status} a moment ago)")


def _history(store: RunStore, run_id: uuid.UUID) -> tuple[list[StepRecord], list[RunRecord], RunTotals]:
    """What a resumed run did before: its steps, its child runs, what its own LLM calls spent."""
    steps = store.list_steps(run_id)
    children = store.list_runs(parent_run_id=run_id, limit=100_000)
    return steps, children, _spent_by(store, run_id)


async def _resume_child(
    flow: BaseFlow, parent: RunContext, child: RunRecord, model: str | None
) -> dict[str, Any]:
    if child.flow_name != flow.flow_name:
        raise ResumeMismatch(
            f"cannot resume run {parent.run_id}: its child run '{child.run_key}' was flow "
            f"'{child.flow_name}', but the flow now calls '{flow.flow_name}' there"
        )
    if child.status == RunStatus.COMPLETED:  # replayed: its spending counts in the parent's totals
        flow.run_id = child.id
        if (child.flow_metadata or {}).get("copied_from"):  # a fork's copy: the original paid for it
            return dict(child.outputs or {})
        unpriced: set[str] = set()
        if child.unpriced_calls:
            unpriced = await asyncio.to_thread(_unpriced_models, parent.store, child)
        parent.totals.add(child.total_tokens, child.total_cost, child.unpriced_calls, unpriced)
        return dict(child.outputs or {})
    return await resume(flow, child, model=model, parent=parent)


# -- the run context, built here only ---------------------------------------------------------------
def budget(
    flow: BaseFlow, parent: RunContext | None, max_cost: float | None, max_tokens: int | None
) -> tuple[float | None, int | None]:
    """The run's limits: the given ones, else the class's; a child run never gets more than what its
    parent has left."""
    cost = max_cost if max_cost is not None else flow.max_cost
    tokens = max_tokens if max_tokens is not None else flow.max_tokens
    if parent is not None:
        parent_cost, parent_tokens = parent.remaining_budget()
        if parent_cost is not None:
            cost = parent_cost if cost is None else min(cost, parent_cost)
        if parent_tokens is not None:
            tokens = parent_tokens if tokens is None else min(tokens, parent_tokens)
    return cost, tokens


def _context(
    flow: BaseFlow,
    engine: Engine,
    run: RunRecord,
    parent: RunContext | None,
    model: str | None,
    max_cost: float | None,
    max_tokens: int | None,
    **resumed: Any,
) -> RunContext:
    limits = budget(flow, parent, max_cost, max_tokens)
    cache = (run.flow_metadata or {}).get(_CACHE)
    return RunContext(
        cache=cache if isinstance(cache, bool) else None,
        run_id=run.id,
        flow_name=flow.flow_name,
        engine=engine,
        store=engine.store,
        parent=parent,
        user_id=run.user_id,
        model=model or flow.model,
        total_steps=run.total_steps if run.total_steps is not None else flow.total_steps,
        max_cost=limits[0],
        max_tokens=limits[1],
        **resumed,
    )


# -- running it and recording its end ---------------------------------------------------------------
async def _run_recorded(
    flow: BaseFlow,
    ctx: RunContext,
    validated: dict[str, Any],
    *,
    previous_ms: int = 0,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    plugins = ctx.engine.plugins
    parent = ctx.parent
    step = current_step.get() if parent is not None else None  # still the parent's, if a step started it
    event = FlowEvent(
        run_id=ctx.run_id,
        flow_name=flow.flow_name,
        inputs=validated,
        parent_run_id=parent.run_id if parent else None,
        user_id=ctx.user_id,
        parent_step_id=step.step_id if step is not None and parent and step.run_id == parent.run_id else None,
        max_cost=ctx.max_cost,
        max_tokens=ctx.max_tokens,
        metadata=metadata or {},
    )
    started = time.perf_counter()
    ctx.engine.ensure_started()
    token = current_run.set(ctx)
    heartbeat = asyncio.ensure_future(_heartbeat(ctx))
    try:
        await plugins.fire("before_flow", event=event)
        outputs = _checked_outputs(flow, await flow._execute_flow_logic(validated))
        outputs_json = _storable_outputs(flow, outputs)
    except BaseException as exc:
        heartbeat.cancel()
        status = _status_for(exc)
        await _record_end(ctx, _end_changes(ctx, started, previous_ms, status, error=describe_error(exc)))
        event.error, event.status = exc, status.value
        event.total_tokens, event.total_cost = ctx.totals.tokens, ctx.totals.cost
        if status is RunStatus.FAILED:
            await report_hook(plugins, "on_flow_error", event=event)
        else:  # cancelled or waiting: stopped, not ended by a failure
            await report_hook(plugins, "on_flow_stop", event=event)
        raise
    finally:
        heartbeat.cancel()
        current_run.reset(token)
        if ctx.parent is not None:  # a parent's totals include what its child runs spent
            ctx.parent.totals.add_totals(ctx.totals)
    changes = _end_changes(ctx, started, previous_ms, RunStatus.COMPLETED, outputs=outputs_json)
    try:
        await ctx.store.update_run(ctx.run_id, changes)
    except Exception as exc:  # the database refused the outputs: the run must not stay running
        error = f"the flow's outputs could not be stored: {describe_error(exc)}"
        failed = _end_changes(ctx, started, previous_ms, RunStatus.FAILED, error=error)
        await _record_end(ctx, failed)
        event.error, event.status = exc, RunStatus.FAILED.value
        event.total_tokens, event.total_cost = ctx.totals.tokens, ctx.totals.cost
        await report_hook(plugins, "on_flow_error", event=event)
        raise FlowEngineError(f"flow '{flow.flow_name}': {error}") from exc
    event.outputs, event.status = outputs, RunStatus.COMPLETED.value
    event.total_tokens, event.total_cost = ctx.totals.tokens, ctx.totals.cost
    await report_hook(plugins, "after_flow", event=event)
    return outputs


async def _record_end(ctx: RunContext, changes: RunChanges) -> None:
    """Write how the run ended; an error text the database refuses is written in ASCII instead."""
    try:
        await ctx.store.update_run(ctx.run_id, changes)
    except Exception:
        changes["error_message"] = ascii(changes.get("error_message"))
        await ctx.store.update_run(ctx.run_id, changes)


def _storable_outputs(flow: BaseFlow, outputs: dict[str, Any]) -> Any:
    try:
        return storable(outputs, "outputs")
    except NotStorable as exc:
        raise FlowEngineError(
            f"flow '{flow.flow_name}' returned outputs that cannot be stored ({exc}); return JSON "
            "values, pydantic models or dataclasses"
        ) from None


def _checked_outputs(flow: BaseFlow, outputs: Any) -> dict[str, Any]:
    if isinstance(outputs, BaseModel):
        outputs = outputs.model_dump()
    if not isinstance(outputs, dict):
        raise FlowEngineError(
            f"flow '{flow.flow_name}' returned {type(outputs).__name__} from _execute_flow_logic; "
            "return a dict"
        )
    if flow.Outputs is not None:
        try:
            flow.Outputs.model_validate(outputs)
        except ValidationError as exc:
            raise FlowEngineError(f"flow '{flow.flow_name}' returned invalid outputs:\n{exc}") from None
    return outputs


def _cache_option(cache: bool | None) -> dict[str, Any]:
    """A run's own say on the response cache, kept in ``flow_metadata["cache"]`` (resume keeps it)."""
    return {} if cache is None else {_CACHE: bool(cache)}


def _run_options(model: str | None, max_cost: float | None, max_tokens: int | None) -> dict[str, Any]:
    """What a root run was started with from outside its code (``flow run -m/--max-cost/--max-tokens``),
    kept in ``flow_metadata["run_options"]`` so that resuming it after a crash keeps them."""
    given = {"model": model, "max_cost": max_cost, "max_tokens": max_tokens}
    options = {k: v for k, v in given.items() if v is not None}
    return {_RUN_OPTIONS: options} if options else {}


def _stored_options(
    run: RunRecord, model: str | None, max_cost: float | None, max_tokens: int | None
) -> tuple[str | None, float | None, int | None]:
    meta = run.flow_metadata or {}
    stored = {**(meta.get("background") or {}), **(meta.get(_RUN_OPTIONS) or {})}
    if max_cost is None and max_tokens is None:  # a budget given to resume replaces the stored one
        max_cost, max_tokens = stored.get("max_cost"), stored.get("max_tokens")
    return model or stored.get("model"), max_cost, max_tokens


def _spent_by(store: RunStore, run_id: uuid.UUID) -> RunTotals:
    """Tokens and cost of every LLM call attributed to the run itself (not its child runs)."""
    totals = RunTotals()
    for request in store.list_llm_requests(flow_run_id=run_id):
        unpriced = request.status == "completed" and request.cost is None
        totals.add(request.total_tokens, request.cost, int(unpriced), [request.model] if unpriced else [])
    return totals


def _unpriced_models(store: RunStore, run: RunRecord, depth: int = 0) -> set[str]:
    """The models without a price that a run (and its child runs) called: named in budget messages."""
    if not run.unpriced_calls or depth > 50:
        return set()
    models = _spent_by(store, run.id).unpriced_models
    for child in store.list_runs(parent_run_id=run.id, limit=100_000):
        models |= _unpriced_models(store, child, depth + 1)
    return models


def _status_for(exc: BaseException) -> RunStatus:
    if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | RunCancelled):
        return RunStatus.CANCELLED
    if isinstance(exc, RunWaiting):  # stopped at wait_for_input: not an end, nothing failed
        return RunStatus.WAITING
    return RunStatus.FAILED


def _end_changes(
    ctx: RunContext,
    started: float,
    previous_ms: int,
    status: RunStatus,
    *,
    outputs: Any = None,
    error: str | None = None,
) -> RunChanges:
    now = utcnow()
    changes: RunChanges = {
        "status": status.value,
        "completed_at": now,
        "last_heartbeat": now,
        "execution_time_ms": previous_ms + int((time.perf_counter() - started) * 1000),
        "step_progress": ctx.completed_steps,
        "total_tokens": ctx.totals.tokens,
        "total_cost": ctx.totals.cost,
        "unpriced_calls": ctx.totals.unpriced_calls,
    }
    if status is RunStatus.COMPLETED:
        changes["outputs"] = outputs
        changes["current_step"] = None
        if ctx.total_steps:
            changes["progress_percentage"] = 100.0
    elif status is RunStatus.WAITING:  # not ended: no end time, no error; current_step names the wait
        del changes["completed_at"]
    else:
        changes["error_message"] = error
    return changes


async def _heartbeat(ctx: RunContext) -> None:
    """Refresh ``last_heartbeat`` (so crashes can be told from slow runs) and pick up cancel requests."""
    interval = ctx.engine.settings.heartbeat_interval
    with contextlib.suppress(asyncio.CancelledError):
        while True:
            await asyncio.sleep(interval)
            if await ctx.store.heartbeat(ctx.run_id, utcnow()):
                ctx.cancel_requested = True
