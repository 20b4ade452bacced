"""Flows: ``BaseFlow.execute`` creates the run row, sets the run context, runs ``_execute_flow_logic``
and records how it ended. A flow executed inside another flow is a child run of it."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Any, ClassVar

from pydantic import BaseModel, ValidationError

from .context import RunContext, current_run
from .engine import get_engine
from .errors import FlowEngineError, InputValidationError
from .jsonable import describe_error, to_jsonable
from .runtime_info import FlowEvent
from .storage import RunRecord, RunStatus, utcnow


def _parse_user_id(user_id: uuid.UUID | str | None) -> uuid.UUID | None:
    if user_id is None or isinstance(user_id, uuid.UUID):
        return user_id
    try:
        return uuid.UUID(str(user_id))
    except ValueError:
        raise InputValidationError("user_id", [{"loc": ("user_id",), "msg": f"'{user_id}' is not a UUID"}]) from None


class BaseFlow:
    """Base class for multi-step AI workflows.

    Set ``flow_name``, optionally an ``Inputs`` (and ``Outputs``) pydantic model, ``total_steps`` (for
    a progress percentage) and ``model`` (the run-level default model), and implement
    ``async def _execute_flow_logic(self, inputs: dict) -> dict``.
    """

    flow_name: ClassVar[str]
    Inputs: ClassVar[type[BaseModel] | None] = None
    Outputs: ClassVar[type[BaseModel] | None] = None
    total_steps: ClassVar[int | None] = None
    model: ClassVar[str | None] = None
    description: ClassVar[str | None] = None

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
            raise InputValidationError(owner, [{"loc": (), "msg": f"expected a dict, got {type(inputs).__name__}"}])
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
                f"flow '{self.flow_name}' returned {type(outputs).__name__} from _execute_flow_logic; return a dict"
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
    ) -> dict[str, Any]:
        """Validate ``inputs``, run the flow as a recorded run, return its outputs dict.

        The run's id is on ``self.run_id`` as soon as the run row exists.
        """
        validated = self.validate_inputs(inputs)
        parsed_user = _parse_user_id(user_id)
        engine = get_engine()
        store = engine.store
        parent = current_run.get()
        now = utcnow()
        record = RunRecord(
            user_id=parsed_user if parsed_user is not None or parent is None else parent.user_id,
            flow_name=self.flow_name,
            parent_run_id=parent.run_id if parent else None,
            run_key=parent.next_child_key(self.flow_name) if parent else None,
            status=RunStatus.RUNNING.value,
            execution_mode="sync",
            total_steps=self.total_steps,
            started_at=now,
            last_heartbeat=now,
            inputs=to_jsonable(validated),
            flow_metadata=to_jsonable(metadata) if metadata else None,
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
        )
        return await self._run_recorded(ctx, validated)

    async def _run_recorded(self, ctx: RunContext, validated: dict[str, Any]) -> dict[str, Any]:
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
            cancelled = isinstance(exc, asyncio.CancelledError | KeyboardInterrupt)
            status = RunStatus.CANCELLED if cancelled else RunStatus.FAILED
            await ctx.store.update_run(ctx.run_id, _end_changes(ctx, started, status, error=describe_error(exc)))
            event.error = exc
            if not cancelled:
                await plugins.fire("on_flow_error", event=event)
            raise
        finally:
            heartbeat.cancel()
            current_run.reset(token)
            if ctx.parent is not None:  # a parent's totals include what its child runs spent
                ctx.parent.totals.add(ctx.totals.tokens, ctx.totals.cost, ctx.totals.unpriced_calls)
        outputs_json = to_jsonable(outputs)
        await ctx.store.update_run(
            ctx.run_id, _end_changes(ctx, started, RunStatus.COMPLETED, outputs=outputs_json)
        )
        event.outputs = outputs
        await plugins.fire("after_flow", event=event)
        return outputs


def _end_changes(
    ctx: RunContext, started: float, status: RunStatus, *, outputs: Any = None, error: str | None = None
) -> dict[str, Any]:
    now = utcnow()
    changes: dict[str, Any] = {
        "status": status.value,
        "completed_at": now,
        "last_heartbeat": now,
        "execution_time_ms": int((time.perf_counter() - started) * 1000),
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
    interval = ctx.engine.settings.heartbeat_interval
    with contextlib.suppress(asyncio.CancelledError):
        while True:
            await asyncio.sleep(interval)
            await ctx.store.update_run(ctx.run_id, {"last_heartbeat": utcnow()})
