"""Durable execution from the outside: resume a stored run, cancel one, find crashed ones.

A run is resumed in place (same id): the flow runs again with its stored inputs, steps that completed
return their stored outputs with no LLM call, and execution goes on live from the first step without
one. A run is "crashed" when it says running but its heartbeat stopped: its process died.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from . import flow_runner
from .engine import get_engine
from .errors import UsageError
from .flow_registry import resolve_flow
from .flow_runner import display_status, is_stale, stale_before
from .flows import BaseFlow
from .human_input import waiting_step
from .storage import RunChanges, RunRecord, RunStatus, RunStore, StepChanges, utcnow

__all__ = ["cancel", "display_status", "flow_class_for", "is_stale", "recover", "resume", "stale_before"]


def flow_class_for(run: RunRecord) -> type[BaseFlow]:
    """The class that ran ``run``: its stored reference (module:Class or file.py:Class), else its name."""
    ref = (run.flow_metadata or {}).get("flow_ref")
    if ref:  # already loaded here (a script resuming or forking its own runs): not imported twice
        loaded = _loaded_flow(ref, run.flow_name)
        if loaded is not None:
            return loaded
    errors = []
    for target in [t for t in (ref, run.flow_name) if t]:
        try:
            cls = resolve_flow(target)
        except UsageError as exc:
            errors.append(str(exc).strip().splitlines()[0].rstrip("."))
            continue
        if cls.flow_name == run.flow_name:
            return cls
        errors.append(f"'{target}' is flow '{cls.flow_name}', not '{run.flow_name}'")
    raise UsageError(
        f"cannot find the code of flow '{run.flow_name}' to resume run {run.id}: {'; '.join(errors)}. "
        "Run `flow resume` where that code can be imported (its folder, PYTHONPATH or installed "
        "package), or call `await TheFlow().resume(run_id)` from Python"
    )


def _loaded_flow(ref: str, flow_name: str) -> type[BaseFlow] | None:
    pending: list[type[BaseFlow]] = [BaseFlow]
    while pending:
        cls = pending.pop()
        if getattr(cls, "flow_name", None) == flow_name and flow_runner.flow_reference(cls) == ref:
            return cls
        pending.extend(cls.__subclasses__())
    return None


async def resume(
    run_id: uuid.UUID | str,
    *,
    model: str | None = None,
    max_cost: float | None = None,
    max_tokens: int | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Resume a failed, crashed or cancelled run in place and return its outputs.

    A completed run is returned as it is (nothing runs). A run that is still running (fresh heartbeat)
    is refused unless ``force``. A child run is resumed through its root run.
    """
    run = await asyncio.to_thread(get_engine().store.load_run, run_id)
    if run.parent_run_id is not None:
        raise UsageError(f"run {run.id} is a child of run {run.parent_run_id}; resume that run instead")
    if run.status == RunStatus.RUNNING and not force and not is_stale(run):
        raise UsageError(
            f"run {run.id} is still running (heartbeat at {run.last_heartbeat:%Y-%m-%d %H:%M:%S} UTC); "
            "cancel it first, or wait until it is reported crashed"
        )
    flow = flow_class_for(run)()
    return await flow_runner.resume(
        flow, run, model=model, max_cost=max_cost, max_tokens=max_tokens, claim=True, force=force
    )


async def cancel(run_id: uuid.UUID | str) -> tuple[RunRecord, str]:
    """Ask a run to stop at its next step boundary; return it and its status after the request.

    ``running``: its process stops at its next step boundary (or heartbeat), as ``cancelled``. A run
    nobody executes - pending, crashed, waiting for input, or running with a stale heartbeat - is
    ``cancelled`` at once. A finished run keeps its status.
    """
    store = get_engine().store
    run = await asyncio.to_thread(store.load_run, run_id)
    if is_stale(run):  # its process is gone and would never read the request
        await _mark_crashed_tree(store, run)
    status = await store.request_cancel(run.id)
    if status == RunStatus.WAITING:  # no process holds it: nobody would read the request
        status = await _cancel_waiting(store, run)
    return run, status


async def _cancel_waiting(store: RunStore, run: RunRecord) -> str:
    """Cancel a run waiting for input, with its whole tree: the root is claimed first (as ``flow
    respond`` claims it), so of a cancel and an answer given at once exactly one wins; then the wait's
    step and every waiting run of the tree are recorded cancelled. Resumed later, the run waits again.
    Returns the status after the request (``running`` if an answer won: it is asked to stop)."""
    root = run
    while root.parent_run_id is not None:
        root = await asyncio.to_thread(store.load_run, root.parent_run_id)
    if not await store.claim_run(root.id, f"cancel-{uuid.uuid4().hex[:8]}", stale_before()):
        return await store.request_cancel(root.id)  # answered just now: it runs, or has ended
    # read once the claim is held: no answer can move the tree on any more
    waiting = await asyncio.to_thread(_waiting_tree, store, root)
    now = utcnow()
    for waiter in reversed(waiting):  # the innermost first, the root (which the claim holds) last
        step = waiting_step(await asyncio.to_thread(store.list_steps, waiter.id))
        name = f" '{step.step_key}'" if step is not None else ""
        message = f"cancelled (flow cancel) while waiting for input{name}"
        changes: RunChanges = {
            "status": RunStatus.CANCELLED.value,
            "completed_at": now,
            "error_message": message,
            "claimed_by": None,
        }
        if step is None:
            await store.update_run(waiter.id, changes)
            continue
        step_changes: StepChanges = {
            "status": RunStatus.CANCELLED.value,
            "completed_at": now,
            "error_message": message,
        }
        await store.finish_step(step.id, step_changes, waiter.id, changes)
    return RunStatus.CANCELLED.value


def _waiting_tree(store: RunStore, run: RunRecord, depth: int = 0) -> list[RunRecord]:
    """``run`` and its waiting child runs, parents before their children."""
    found = [run]
    if depth < 50:
        for child in store.list_runs(parent_run_id=run.id, status=RunStatus.WAITING.value, limit=1000):
            found += _waiting_tree(store, child, depth + 1)
    return found


async def _mark_crashed_tree(store: RunStore, run: RunRecord, depth: int = 0) -> None:
    """Mark a stale run and its stale child runs crashed (atomically per run: one that heartbeats
    again is left alone)."""
    await store.mark_crashed(stale_before(), run.id)
    if depth < 50:
        children = await asyncio.to_thread(store.list_runs, parent_run_id=run.id, limit=100_000)
        for child in children:
            if is_stale(child):
                await _mark_crashed_tree(store, child, depth + 1)


def check_stale_after(threshold_seconds: float | None) -> None:
    if threshold_seconds is None:
        return
    interval = get_engine().settings.heartbeat_interval
    if not threshold_seconds > 2 * interval:
        raise UsageError(
            f"a stale-after of {threshold_seconds:g} s would mark live runs crashed: runs heartbeat every "
            f"{interval:g} s (FLOW_ENGINE_HEARTBEAT_INTERVAL); give more than {2 * interval:g} s"
        )


async def recover(threshold_seconds: float | None = None) -> list[uuid.UUID]:
    """Mark every stale running run as crashed (so it can be resumed); return their ids.

    A threshold not above twice the heartbeat interval would call live runs dead: refused."""
    check_stale_after(threshold_seconds)
    return await get_engine().store.mark_crashed(stale_before(threshold_seconds))
