"""Forking a run from one of its steps ("time travel"): a new run that reuses the stored outputs of the
steps before that step and runs live from it, with changed inputs or another model.

The original run is only read. The fork is a new root run whose ``flow_metadata["forked_from"]`` names
the original and the step; the completed steps before the fork point (and the completed child runs
started before it) are copied into it, so the one flow runner replays them exactly as a resume does
(by position, no LLM call) and runs the rest live. The fork's token and cost totals count what the fork
itself spent: the copied steps were paid for by the original.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from . import flow_runner
from .engine import get_engine
from .errors import UsageError
from .flow_runner import is_stale
from .flows import BaseFlow
from .jsonable import to_jsonable
from .resume import flow_class_for
from .storage import RunRecord, RunStatus, RunStore, StepRecord, utcnow

__all__ = ["fork_points", "fork_run", "prepare_fork"]

_COPIED_METADATA = ("flow_ref", "run_options")  # what a fork keeps of the original's flow_metadata


def fork_points(run: RunRecord | uuid.UUID | str) -> list[StepRecord]:
    """The steps of a root run in order: each one's ``step_key`` is a point the run can be forked from."""
    store = get_engine().store
    original = run if isinstance(run, RunRecord) else store.load_run(run)
    _check_forkable(original)
    return sorted(store.list_steps(original.id), key=lambda s: s.step_order)


async def prepare_fork(
    run: RunRecord | uuid.UUID | str,
    from_step: str,
    *,
    inputs: dict[str, Any] | None = None,
    flow: BaseFlow | None = None,
) -> tuple[BaseFlow, RunRecord]:
    """Check everything, then write the fork: its run row (pending) and the copies of what it reuses.
    Returns the flow to execute it with (``flow_runner.resume``) and the new run. Nothing is written
    when a check fails (``UsageError``: a child or running run, an unknown step, invalid inputs)."""
    store = get_engine().store
    original = run if isinstance(run, RunRecord) else await asyncio.to_thread(store.load_run, run)
    _check_forkable(original)
    if flow is None:
        flow = flow_class_for(original)()
    elif flow.flow_name != original.flow_name:
        raise UsageError(f"run {original.id} is a run of flow '{original.flow_name}', not '{flow.flow_name}'")
    steps = sorted(await asyncio.to_thread(store.list_steps, original.id), key=lambda s: s.step_order)
    point = _fork_point(original, steps, from_step)
    merged = {**original.inputs, **(inputs or {})}
    validated = to_jsonable(flow.validate_inputs(merged))
    kept_steps = [s for s in steps if s.step_order < point.step_order and s.status == RunStatus.COMPLETED]
    children = await asyncio.to_thread(store.list_runs, parent_run_id=original.id, limit=100_000)
    kept_children = [
        c for c in children if c.status == RunStatus.COMPLETED and c.created_at < point.created_at
    ]
    metadata = {k: v for k, v in (original.flow_metadata or {}).items() if k in _COPIED_METADATA}
    metadata["forked_from"] = {
        "run_id": str(original.id),
        "step_key": point.step_key,
        "step_order": point.step_order,
        "changed_inputs": sorted(k for k in (inputs or {}) if original.inputs.get(k) != merged[k]),
        "at": utcnow().isoformat(),
    }
    fork = RunRecord(
        user_id=original.user_id,
        flow_name=original.flow_name,
        status=RunStatus.PENDING.value,
        total_steps=original.total_steps,
        inputs=validated,
        flow_metadata=metadata,
    )
    await store.create_run(fork)
    await _copy_steps(store, kept_steps, fork.id)
    for child in kept_children:
        await _copy_tree(store, child, fork.id)
    return flow, fork


async def fork_run(
    run: RunRecord | uuid.UUID | str,
    from_step: str,
    *,
    inputs: dict[str, Any] | None = None,
    model: str | None = None,
    flow: BaseFlow | None = None,
) -> dict[str, Any]:
    """Fork ``run`` at the step whose key is ``from_step`` (``flow fork RUN --list`` shows the keys):
    a new run with the original's inputs updated by ``inputs`` that reuses the outputs of the steps
    before that step and runs the rest live, on ``model`` if given (the run-level model; the original's
    otherwise). Returns the fork's outputs; ``flow.run_id`` (or ``current_run_id`` in hooks) is its id.
    ``flow`` is needed only for a flow class that cannot be imported by its stored reference."""
    flow, fork = await prepare_fork(run, from_step, inputs=inputs, flow=flow)
    return await execute_fork(flow, fork, model=model)


async def execute_fork(flow: BaseFlow, fork: RunRecord, *, model: str | None = None) -> dict[str, Any]:
    """Run a fork written by :func:`prepare_fork`: replayed up to its fork point, live from there."""
    return await flow_runner.resume(flow, fork, model=model, as_fork=True)


def _check_forkable(run: RunRecord) -> None:
    if run.parent_run_id is not None:
        raise UsageError(f"run {run.id} is a child of run {run.parent_run_id}; fork that run instead")
    if run.status in (RunStatus.RUNNING, RunStatus.PENDING) and not is_stale(run):
        raise UsageError(
            f"run {run.id} is still {run.status}; fork it once it has ended (or cancel it first)"
        )


def _fork_point(run: RunRecord, steps: list[StepRecord], from_step: str) -> StepRecord:
    for step in steps:
        if step.step_key == from_step:
            return step
    keys = ", ".join(s.step_key for s in steps) or "none"
    raise UsageError(f"run {run.id} has no step '{from_step}'; its steps: {keys} (flow fork RUN --list)")


async def _copy_steps(store: RunStore, steps: list[StepRecord], run_id: uuid.UUID) -> None:
    for step in steps:
        copy = step.model_copy(update={"id": uuid.uuid4(), "flow_run_id": run_id, "llm_request_id": None})
        await store.start_step(copy, {})


async def _copy_tree(store: RunStore, run: RunRecord, parent_id: uuid.UUID, depth: int = 0) -> None:
    """A completed child run, its steps and its own child runs, under the fork. ``copied_from`` tells
    the runner not to add its totals to the fork's (the original paid for it)."""
    metadata = {**(run.flow_metadata or {}), "copied_from": str(run.id)}
    update = {"id": uuid.uuid4(), "parent_run_id": parent_id, "claimed_by": None, "flow_metadata": metadata}
    copy = run.model_copy(update=update)
    await store.create_run(copy)
    await _copy_steps(store, await asyncio.to_thread(store.list_steps, run.id), copy.id)
    if depth < 50:
        for child in await asyncio.to_thread(store.list_runs, parent_run_id=run.id, limit=100_000):
            await _copy_tree(store, child, copy.id, depth + 1)
