"""Answering a waiting run (``flow respond``, ``respond_to_run``) and failing the waits whose deadline
passed (``flow recover``). See ``flow_engine.human_input`` for how a run comes to wait."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Any

from . import flow_runner
from .engine import get_engine
from .errors import FlowEngineError, InputValidationError, UsageError
from .flows import BaseFlow
from .human_input import describe_wait, waiting_step
from .jsonable import NotStorable, storable, to_jsonable
from .resume import flow_class_for
from .storage import RunRecord, RunStatus, RunStore, StepRecord, utcnow

__all__ = ["answer_wait", "expire_waits", "respond_to_run", "validate_answer", "waiting_for"]


class AnswerRefused(UsageError):
    """The run cannot take this answer in the state it is in: it waits for nothing, or for another
    input, or someone else answered it just now (exit code 2; nothing was written)."""


class WaitExpired(FlowEngineError):
    """The wait passed its deadline before the answer came: the run is recorded failed (exit code 1)."""


def waiting_for(run: RunRecord, store: RunStore | None = None) -> tuple[RunRecord, StepRecord] | None:
    """The run (this one or a child run of it) and step it waits at, if it is waiting (in ``store``,
    by default the engine's)."""
    store = store or get_engine().store
    if run.status != RunStatus.WAITING:
        return None
    found = waiting_step(store.list_steps(run.id))
    if found is not None:
        return run, found
    for child in store.list_runs(parent_run_id=run.id, status=RunStatus.WAITING.value, limit=1000):
        inner = waiting_for(child, store)
        if inner is not None:
            return inner
    return None


def validate_answer(step: StepRecord, data: Any) -> dict[str, Any]:
    """``data`` checked against the JSON schema the wait stored (jsonschema): every problem named."""
    import jsonschema

    schema = (step.inputs or {}).get("schema") or {}
    owner = f"the answer to '{step.step_key}'"
    if not isinstance(data, dict):
        raise InputValidationError(owner, [{"loc": (), "msg": "must be a JSON object of fields"}])
    problems = _unknown_fields(schema, data)
    if problems:  # named with the closest real field; the schema's own complaint about them left out
        schema = {k: v for k, v in schema.items() if k != "additionalProperties"}
    found = sorted(jsonschema.Draft202012Validator(schema).iter_errors(data), key=lambda e: list(e.path))
    problems += [{"loc": tuple(e.path), "msg": e.message} for e in found]
    try:  # what no backend can store (NUL, a lone surrogate...) would fail the run on every resume
        storable(data, "answer")
    except NotStorable as exc:
        where = exc.where.removeprefix("answer").lstrip(".")
        problems.append({"loc": (where,) if where else (), "msg": exc.why})
    if problems:
        raise InputValidationError(owner, problems)
    return dict(to_jsonable(data))


def _unknown_fields(schema: dict[str, Any], data: dict[str, Any]) -> list[dict[str, Any]]:
    """The answer's fields the schema does not have, each named with the closest real one: pydantic
    ignores them, so a typo would be dropped without a word. A schema that takes more fields
    (pydantic ``extra="allow"``: ``additionalProperties`` true or a schema) takes them."""
    import difflib

    properties = schema.get("properties")
    if not isinstance(properties, dict) or schema.get("additionalProperties", False) is not False:
        return []
    fields = [str(name) for name in properties]
    problems: list[dict[str, Any]] = []
    for key in data:
        if key in properties:
            continue
        close = difflib.get_close_matches(str(key), fields, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"its fields are: {', '.join(fields) or 'none'}"
        shown = key if str(key).isprintable() else ascii(key)  # NUL, a lone surrogate: escaped
        problems.append({"loc": (shown,), "msg": f"not a field of the answer; {hint}"})
    return problems


def _deadline(step: StepRecord) -> datetime | None:
    text = (step.inputs or {}).get("deadline")
    return datetime.fromisoformat(text) if text else None


def not_waiting(run: RunRecord) -> AnswerRefused:
    """The refusal of an answer to a run that waits for nothing."""
    return AnswerRefused(f"run {run.id} is not waiting for input (it is {run.status}); nothing to answer")


async def answer_wait(run_id: uuid.UUID | str, name: str, data: Any) -> tuple[BaseFlow, RunRecord]:
    """Check and record the answer; return the flow and the root run to continue. Nothing is written
    if a check fails; of two answers given at once exactly one is recorded (an atomic claim)."""
    store = get_engine().store
    run = await asyncio.to_thread(store.load_run, run_id)
    root = run
    while root.parent_run_id is not None:
        root = await asyncio.to_thread(store.load_run, root.parent_run_id)
    found = await asyncio.to_thread(waiting_for, root)
    if found is None:
        raise not_waiting(root)
    waiter, step = found
    if step.step_key != name:
        raise AnswerRefused(f"run {root.id} is waiting for input '{step.step_key}', not '{name}'")
    answer = validate_answer(step, data)
    flow = flow_class_for(root)()
    deadline = _deadline(step)
    if deadline is not None and utcnow() > deadline:
        await _expire(store, root, waiter, step)
        raise WaitExpired(
            f"run {root.id}: the wait for '{name}' passed its deadline ({deadline:%Y-%m-%d %H:%M:%S} UTC); "
            "the run is recorded failed"
        )
    if not await store.claim_run(root.id, f"respond-{uuid.uuid4().hex[:8]}", flow_runner.stale_before()):
        raise AnswerRefused(f"run {root.id} was answered by someone else just now")
    now = utcnow()
    await store.finish_step(
        step.id,
        {"status": RunStatus.COMPLETED.value, "outputs": {"output_content": answer}, "completed_at": now},
        waiter.id,
        {"last_heartbeat": now},
    )
    return flow, root


async def respond_to_run(run_id: uuid.UUID | str, name: str, data: Any) -> dict[str, Any] | None:
    """Answer a run waiting at ``wait_for_input(name, ...)`` with ``data`` (validated against the
    answer's stored JSON schema: ``InputValidationError`` otherwise, the run still waiting) and continue
    it in place: completed steps are replayed from the store with no LLM call. A run started here goes
    on here and its outputs are returned (or ``RunWaiting`` is raised again at its next wait); a
    background run (``submit``, ``flow run --background``) is handed back to its executor and None is
    returned (``wait_for_run`` / ``flow wait`` follow it). ``UsageError`` if the run is not waiting for
    ``name``; a passed deadline fails the run (``FlowEngineError``)."""
    flow, root = await answer_wait(run_id, name, data)
    if await hand_back(root, type(flow)):
        return None
    return await flow_runner.resume(flow, root)


def background_executor(run: RunRecord) -> str | None:
    """The executor a background run was submitted to, if it was."""
    background = (run.flow_metadata or {}).get("background")
    return background.get("executor") if isinstance(background, dict) else None


async def hand_back(root: RunRecord, flow_class: type[BaseFlow]) -> bool:
    """An answered background run goes back to its executor, pending, to be resumed by a worker (it
    replays what is done, the answer included). False for a run that was not submitted. An executor
    that cannot take it (its broker is down, say) raises ``ExecutorUnavailable`` and leaves the run
    failed with the reason: ``flow resume`` goes on from the answer."""
    name = background_executor(root)
    if name is None:
        return False
    from .executor_base import executor_info, get_executor

    engine = get_engine()
    if executor_info(name, engine).in_process:  # its executor lives in the submitting process: here
        return False
    runner = get_executor(name, engine)
    await engine.store.update_run(root.id, {"status": RunStatus.PENDING.value, "claimed_by": None})
    # one the executor cannot take is left failed with the reason (resumable), as a submitted one is
    await flow_runner.hand_over(
        runner, engine.store, root, flow_class, f"hand answered run {root.id} back to"
    )
    return True


async def expire_waits(now: datetime | None = None) -> list[uuid.UUID]:
    """Fail every waiting run whose wait passed its deadline; return their ids (``flow recover``)."""
    store = get_engine().store
    now = now or utcnow()
    expired = []
    roots = await asyncio.to_thread(store.list_runs, status=RunStatus.WAITING.value, limit=100_000)
    for run in roots:
        if run.parent_run_id is not None:
            continue
        found = await asyncio.to_thread(waiting_for, run)
        if found is None:
            continue
        deadline = _deadline(found[1])
        if deadline is not None and now > deadline:
            await _expire(store, run, *found)
            expired.append(run.id)
    return expired


async def _expire(store: RunStore, root: RunRecord, waiter: RunRecord, step: StepRecord) -> None:
    """The wait's step and every waiting run up to the root: failed, saying why."""
    now = utcnow()
    message = f"no answer to '{step.step_key}' before its deadline {describe_wait(step)['deadline']}"
    await store.finish_step(
        step.id,
        {"status": RunStatus.FAILED.value, "completed_at": now, "error_message": message},
        waiter.id,
        {},
    )
    run: RunRecord | None = waiter
    while run is not None:
        changes = {"status": RunStatus.FAILED.value, "completed_at": now, "error_message": message}
        await store.update_run(run.id, changes)  # type: ignore[arg-type]
        if run.id == root.id or run.parent_run_id is None:
            break
        run = await asyncio.to_thread(store.get_run, run.parent_run_id)
