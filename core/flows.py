"""Flows: ``BaseFlow.execute`` creates the run row, sets the run context, runs ``_execute_flow_logic``
and records how it ended. A flow executed inside another flow is a child run of it. ``resume`` runs a
stored run again in place, replaying the steps it already completed."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sys
import time
import uuid
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ValidationError

from .context import RunContext, RunTotals, current_run
from .engine import get_engine
from .errors import FlowEngineError, InputValidationError, ResumeMismatch, RunCancelled
from .jsonable import describe_error, to_jsonable
from .pacing import start_turn
from .runtime_info import FlowEvent
from .storage import RunRecord, RunStatus, utcnow


def _parse_user_id(user_id: uuid.UUID | str | None) -> uuid.UUID | None:
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
    """A script's absolute path, once per script (every run of its flows records it; each resolve is
    an ``lstat`` per path component)."""
    return Path(path).resolve()


class BaseFlow:
    """Base class for multi-step AI workflows.

    Set ``flow_name``, optionally an ``Inputs`` (and ``Outputs``) pydantic model, ``total_steps`` (for
    a progress percentage), ``model`` (the run-level default model), ``max_cost`` / ``max_tokens``
    (a budget), and implement ``async def _execute_flow_logic(self, inputs: dict) -> dict``.
    """

    flow_name: ClassVar[str]
    Inputs: ClassVar[type[BaseModel] | None] = None
    Outputs: ClassVar[type[BaseModel] | None] = None
    total_steps: ClassVar[int | None] = None
    model: ClassVar[str | None] = None
    description: ClassVar[str | None] = None
    max_cost: ClassVar[float | None] = None
    max_tokens: ClassVar[int | None] = None

    def __init__(self) -> None:
        self.run_id: uuid.UUID | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "flow_name" not in cls.__dict__:
            cls.flow_name = cls.__name__

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError(f"{type(self).__name__} must implement _execute_flow_logic(self, inputs)")

    @classmethod
    def validate_inputs(cls, inputs: dict[str, Any] | BaseModel | None) -> dict[str, Any]:
        owner = f"flow '{cls.flow_name}'"
        if isinstance(inputs, BaseModel):
            inputs = inputs.model_dump()
        if inputs is None:
            inputs = {}
        if not isinstance(inputs, dict):
            raise InputValidationError(
                owner, [{"loc": (), "msg": f"expected a dict, got {type(inputs).__name__}"}]
            )
        if cls.Inputs is None:
            return dict(inputs)
        try:
            return cls.Inputs.model_validate(inputs).model_dump()
        except ValidationError as exc:
            raise InputValidationError.from_pydantic(owner, exc) from None

    def _validate_outputs(self, outputs: Any) -> dict[str, Any]:
        if isinstance(outputs, BaseModel):
            outputs = outputs.model_dump()
        if not isinstance(outputs, dict):
            raise FlowEngineError(
                f"flow '{self.flow_name}' returned {type(outputs).__name__} from _execute_flow_logic; "
                "return a dict"
            )
        if self.Outputs is not None:
            try:
                self.Outputs.model_validate(outputs)
            except ValidationError as exc:
                raise FlowEngineError(f"flow '{self.flow_name}' returned invalid outputs:\n{exc}") from None
        return outputs

    async def execute(
        self,
        inputs: dict[str, Any] | BaseModel | None = None,
        *,
        user_id: uuid.UUID | str | None = None,
        model: str | None = None,
        metadata: dict[str, Any] | None = None,
        max_cost: float | None = None,
        max_tokens: int | None = None,
    ) -> dict[str, Any]:
        """Validate ``inputs``, run the flow as a recorded run, return its outputs dict.

        The run's id is on ``self.run_id`` as soon as the run row exists. ``max_cost`` (USD) and
        ``max_tokens`` stop the run at a step boundary once reached.
        """
        validated = self.validate_inputs(inputs)
        parsed_user = _parse_user_id(user_id)
        await start_turn()  # many flows started at once take turns (pacing.py)
        engine = get_engine()
        store = engine.store
        parent = current_run.get()
        run_key = parent.next_child_key(self.flow_name) if parent else None
        if parent is not None and run_key in parent.child_runs:  # resuming: this child ran before
            return await self._resume_child(parent, parent.child_runs[run_key], model)
        limits = self._limits(parent, max_cost, max_tokens)
        options = _run_options(model, max_cost, max_tokens) if parent is None else {}
        now = utcnow()
        record = RunRecord(
            user_id=parsed_user if parsed_user is not None or parent is None else parent.user_id,
            flow_name=self.flow_name,
            parent_run_id=parent.run_id if parent else None,
            run_key=run_key,
            status=RunStatus.RUNNING.value,
            execution_mode="sync",
            total_steps=self.total_steps,
            started_at=now,
            last_heartbeat=now,
            inputs=to_jsonable(validated),
            flow_metadata={
                "flow_ref": flow_reference(type(self)),
                **(to_jsonable(metadata) if metadata else {}),
                **options,
            },
        )
        self.run_id = record.id
        await store.create_run(record)
        ctx = RunContext(
            run_id=record.id,
            flow_name=self.flow_name,
            engine=engine,
            store=store,
            parent=parent,
            user_id=record.user_id,
            model=model or self.model,
            total_steps=self.total_steps,
            max_cost=limits[0],
            max_tokens=limits[1],
        )
        return await self._run_recorded(ctx, validated)

    async def submit(
        self,
        inputs: dict[str, Any] | BaseModel | None = None,
        *,
        user_id: uuid.UUID | str | None = None,
        executor: str | None = None,
        model: str | None = None,
        metadata: dict[str, Any] | None = None,
        max_cost: float | None = None,
        max_tokens: int | None = None,
    ) -> uuid.UUID:
        """Run the flow in the background: validate ``inputs``, store the run as ``pending``, hand it to
        ``executor`` (default ``FLOW_ENGINE_EXECUTOR``, else ``local``) and return its id at once.

        Follow it with ``flow runs`` / ``flow show``; ``flow_engine.submit.wait_for_run(run_id)`` waits
        for its end. See docs/background.md.
        """
        from .submit import submit

        return await submit(
            self,
            inputs,
            user_id=user_id,
            executor=executor,
            model=model,
            metadata=metadata,
            max_cost=max_cost,
            max_tokens=max_tokens,
        )

    def _limits(
        self, parent: RunContext | None, max_cost: float | None, max_tokens: int | None
    ) -> tuple[float | None, int | None]:
        cost = max_cost if max_cost is not None else self.max_cost
        tokens = max_tokens if max_tokens is not None else self.max_tokens
        if parent is not None:
            parent_cost, parent_tokens = parent.remaining_budget()
            if parent_cost is not None:
                cost = parent_cost if cost is None else min(cost, parent_cost)
            if parent_tokens is not None:
                tokens = parent_tokens if tokens is None else min(tokens, parent_tokens)
        return cost, tokens

    async def resume(
        self,
        run: RunRecord | uuid.UUID | str,
        *,
        model: str | None = None,
        max_cost: float | None = None,
        max_tokens: int | None = None,
        parent: RunContext | None = None,
    ) -> dict[str, Any]:
        """Run a stored run again in place: completed steps return their stored outputs (no LLM call),
        execution goes on live from the first step without one. ``flow_engine.resume_run(run_id)`` finds
        the flow class by itself; this method is for a class it cannot import (defined in a function).

        The run keeps the run-level model and budget it was started with unless ``model`` /
        ``max_cost`` / ``max_tokens`` are given; a budget given here replaces the run's whole budget
        (``max_tokens`` alone lifts an earlier ``max_cost``), the class attributes filling the rest."""
        if not isinstance(run, RunRecord):
            from .resume import load_run

            run = load_run(run)
        if run.flow_name != self.flow_name:
            raise ResumeMismatch(f"run {run.id} is a run of flow '{run.flow_name}', not '{self.flow_name}'")
        if run.status == RunStatus.COMPLETED:
            self.run_id = run.id
            return dict(run.outputs or {})
        engine = get_engine()
        store = engine.store
        validated = self.validate_inputs(run.inputs)
        steps = store.list_steps(run.id)
        children = store.list_runs(parent_run_id=run.id, limit=100_000)
        history = list((run.flow_metadata or {}).get("resumed", []))
        history.append(
            {"at": utcnow().isoformat(), "previous_status": run.status, "error": run.error_message}
        )
        metadata = {**(run.flow_metadata or {}), "resumed": history}
        if parent is None:  # a root run keeps its model and budget unless new ones are given
            model, max_cost, max_tokens = _stored_options(run, model, max_cost, max_tokens)
            metadata.pop(_RUN_OPTIONS, None)
            metadata.update(_run_options(model, max_cost, max_tokens))
        now = utcnow()
        await store.prepare_resume(
            run.id,
            {
                "status": RunStatus.RUNNING.value,
                "completed_at": None,
                "error_message": None,
                "last_heartbeat": now,
                "flow_metadata": metadata,
            },
        )
        self.run_id = run.id
        limits = self._limits(parent, max_cost, max_tokens)
        ctx = RunContext(
            run_id=run.id,
            flow_name=self.flow_name,
            engine=engine,
            store=store,
            parent=parent,
            user_id=run.user_id,
            model=model or self.model,
            total_steps=run.total_steps if run.total_steps is not None else self.total_steps,
            max_cost=limits[0],
            max_tokens=limits[1],
            replay={s.step_order: s for s in steps if s.status == RunStatus.COMPLETED},
            child_runs={c.run_key: c for c in children if c.run_key},
        )
        # what its own LLM calls spent so far, from llm_requests: the run row's totals miss a step that
        # was cut off by a crash (and child runs, which add their own when they end or are replayed)
        ctx.totals.add_totals(_spent_by(store, run.id))
        return await self._run_recorded(ctx, validated, previous_ms=run.execution_time_ms or 0)

    async def _resume_child(self, parent: RunContext, child: RunRecord, model: str | None) -> dict[str, Any]:
        if child.flow_name != self.flow_name:
            raise ResumeMismatch(
                f"cannot resume run {parent.run_id}: its child run '{child.run_key}' was flow "
                f"'{child.flow_name}', but the flow now calls '{self.flow_name}' there"
            )
        if child.status == RunStatus.COMPLETED:  # replayed: its spending counts in the parent's totals
            self.run_id = child.id
            parent.totals.add(
                child.total_tokens, child.total_cost, child.unpriced_calls, _unpriced_models(child)
            )
            return dict(child.outputs or {})
        return await self.resume(child, model=model, parent=parent)

    async def _run_recorded(
        self, ctx: RunContext, validated: dict[str, Any], *, previous_ms: int = 0
    ) -> dict[str, Any]:
        plugins = ctx.engine.plugins
        event = FlowEvent(
            run_id=ctx.run_id,
            flow_name=self.flow_name,
            inputs=validated,
            parent_run_id=ctx.parent.run_id if ctx.parent else None,
        )
        started = time.perf_counter()
        token = current_run.set(ctx)
        heartbeat = asyncio.ensure_future(_heartbeat(ctx))
        try:
            await plugins.fire("before_flow", event=event)
            outputs = self._validate_outputs(await self._execute_flow_logic(validated))
        except BaseException as exc:
            heartbeat.cancel()
            status = _status_for(exc)
            await ctx.store.update_run(
                ctx.run_id, _end_changes(ctx, started, previous_ms, status, error=describe_error(exc))
            )
            event.error = exc
            if status is RunStatus.FAILED:
                await plugins.fire("on_flow_error", event=event)
            raise
        finally:
            heartbeat.cancel()
            current_run.reset(token)
            if ctx.parent is not None:  # a parent's totals include what its child runs spent
                ctx.parent.totals.add_totals(ctx.totals)
        outputs_json = to_jsonable(outputs)
        await ctx.store.update_run(
            ctx.run_id, _end_changes(ctx, started, previous_ms, RunStatus.COMPLETED, outputs=outputs_json)
        )
        event.outputs = outputs
        await plugins.fire("after_flow", event=event)
        return outputs


_RUN_OPTIONS = "run_options"


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


def _spent_by(store: Any, run_id: uuid.UUID) -> RunTotals:
    """Tokens and cost of every LLM call attributed to the run itself (not its child runs)."""
    totals = RunTotals()
    for request in store.list_llm_requests(flow_run_id=run_id):
        unpriced = request.status == "completed" and request.cost is None
        totals.add(request.total_tokens, request.cost, int(unpriced), [request.model] if unpriced else [])
    return totals


def _unpriced_models(run: RunRecord, depth: int = 0) -> set[str]:
    """The models without a price that a run (and its child runs) called: named in budget messages."""
    if not run.unpriced_calls or depth > 50:
        return set()
    store = get_engine().store
    models = _spent_by(store, run.id).unpriced_models
    for child in store.list_runs(parent_run_id=run.id, limit=100_000):
        models |= _unpriced_models(child, depth + 1)
    return models


def _status_for(exc: BaseException) -> RunStatus:
    if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | RunCancelled):
        return RunStatus.CANCELLED
    return RunStatus.FAILED


def _end_changes(
    ctx: RunContext,
    started: float,
    previous_ms: int,
    status: RunStatus,
    *,
    outputs: Any = None,
    error: str | None = None,
) -> dict[str, Any]:
    now = utcnow()
    changes: dict[str, Any] = {
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
