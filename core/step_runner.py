"""Running one step: validate, record the start, run, record the end, fire the lifecycle hooks.

Inside a flow the step gets its place in the run (order and key) before its first ``await``, so steps
started together with ``asyncio.gather`` keep their call order. Outside a flow it runs untracked
(its LLM calls are still recorded).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from .context import RunContext, StepScope, current_run, current_step
from .engine import get_engine
from .errors import InputValidationError, ResumeMismatch, UsageError
from .ids import new_id
from .jsonable import describe_error, to_jsonable
from .runtime_info import StepEvent
from .storage import RunChanges, RunStatus, StepChanges, StepRecord, utcnow

if TYPE_CHECKING:  # pragma: no cover
    from .steps import BaseStep


class StepResult(BaseModel):
    """Result of step execution with output and metadata."""

    step_name: str
    output_content: Any
    metadata: dict[str, Any]


@dataclass
class StepOutput:
    """What a step type's ``run()`` may return to tell the runner more than the content."""

    content: Any
    provider: str | None = None
    model: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# the statuses as plain strings, read once (an enum member's ``.value`` is a property call per use)
_RUNNING = RunStatus.RUNNING.value
_COMPLETED = RunStatus.COMPLETED.value


def _unknown_step_type(step: BaseStep, registry: dict[str, Any]) -> UsageError:
    known = ", ".join(sorted(registry)) or "none"
    return UsageError(
        f"step '{step.step_name}' has step type '{step.step_type}', which no loaded plugin registers "
        f"(registered: {known}); is its plugin installed, or disabled by FLOW_ENGINE_DISABLE_PLUGINS?"
    )


def _usage_of(scope: StepScope) -> tuple[int, float | None, int, Any]:
    """Tokens, cost (None when any call was unpriced), unpriced call count, last LLM request id."""
    tokens, cost, unpriced, last_id = 0, 0.0, 0, None
    for call in scope.calls:
        tokens += call.total_tokens
        if call.cost is None:
            unpriced += 1
        else:
            cost += call.cost
        last_id = call.request_id
    return tokens, (None if unpriced else cost), unpriced, last_id


async def run_step(step: BaseStep, raw_inputs: Any, *, model_override: str | None) -> StepResult:
    engine = get_engine()
    plugins = engine.plugins
    step_types = plugins.step_types()
    if step.step_type not in step_types:
        raise _unknown_step_type(step, step_types)
    ctx = current_run.get()
    name = step.step_name
    slot = None
    if ctx is not None:
        ctx.check_boundary()
        slot = ctx.next_step_slot(name)
        if ctx.replay:
            replayed = _replayed_result(ctx, step, slot)
            if replayed is not None:
                return replayed
    try:
        inputs = step.validate_inputs(raw_inputs)
    except InputValidationError as exc:
        if ctx is not None and slot is not None:
            await _record_rejected_step(ctx, step, slot, raw_inputs, exc)
        raise
    inputs_json = to_jsonable(inputs)
    step_id = None
    if ctx is not None and slot is not None:
        now = utcnow()
        step_id = new_id()
        record = StepRecord(
            id=step_id,
            flow_run_id=ctx.run_id,
            step_name=name,
            step_key=slot[1],
            step_type=step.step_type,
            step_order=slot[0],
            status=_RUNNING,
            inputs=inputs_json,
            created_at=now,
        )
        await ctx.store.start_step(record, {"current_step": slot[1], "last_heartbeat": now})
    # the event is built only for plugins that listen (the CLI's progress display does)
    event = None
    if plugins.step_hooks_listened():
        event = StepEvent(
            run_id=ctx.run_id if ctx else None,
            step_id=step_id,
            step_name=name,
            step_key=slot[1] if slot else None,
            step_type=step.step_type,
            step_order=slot[0] if slot else None,
            total_steps=ctx.total_steps if ctx else None,
            inputs=inputs_json,
        )
    scope = StepScope(
        run_id=ctx.run_id if ctx else None, step_id=step_id, step_name=name, model_override=model_override
    )
    token = current_step.set(scope)
    started = time.perf_counter()
    try:
        if event is not None:
            await plugins.fire("before_step", event=event)
        raw_output = await step.run(inputs)
    except BaseException as exc:
        elapsed_ms = int((time.perf_counter() - started) * 1000)
        cancelled = isinstance(exc, asyncio.CancelledError | KeyboardInterrupt)
        if ctx is not None and step_id is not None:
            await _finish(ctx, scope, step_id, elapsed_ms, _usage_of(scope), error=exc, cancelled=cancelled)
        if event is not None:
            event.error = exc
            if not cancelled:
                await plugins.fire("on_step_error", event=event)
        raise
    finally:
        current_step.reset(token)
    elapsed_ms = int((time.perf_counter() - started) * 1000)
    output = raw_output if isinstance(raw_output, StepOutput) else StepOutput(content=raw_output)
    usage = _usage_of(scope)
    tokens, cost, unpriced, llm_request_id = usage
    metadata: dict[str, Any] = {
        "tokens_used": tokens,
        "cost_estimate": cost,
        "execution_time_ms": elapsed_ms,
        "provider": output.provider,
        "model": output.model,
        "step_type": step.step_type,
        "llm_calls": len(scope.calls),
        "unpriced_calls": unpriced,
        **output.extra,
    }
    if ctx is not None and slot is not None:
        metadata.update(run_id=ctx.run_id_text, step_key=slot[1], step_order=slot[0])
    if llm_request_id is not None:
        metadata["llm_request_id"] = str(llm_request_id)
    result = StepResult(step_name=name, output_content=output.content, metadata=metadata)
    if ctx is not None and step_id is not None:
        # the result holds pydantic's copy of ``metadata``, so the caller may change it; the runner's
        # own values are JSON already, a step type's extras may not be
        stored = to_jsonable(metadata) if output.extra else metadata
        await _finish(ctx, scope, step_id, elapsed_ms, usage, result=result, metadata_json=stored)
    if event is not None:
        event.result = result
        await plugins.fire("after_step", event=event)
    return result


async def _finish(
    ctx: RunContext,
    scope: StepScope,
    step_id: Any,
    elapsed_ms: int,
    usage: tuple[int, float | None, int, Any],
    *,
    result: StepResult | None = None,
    metadata_json: dict[str, Any] | None = None,
    error: BaseException | None = None,
    cancelled: bool = False,
) -> None:
    tokens, cost, unpriced, llm_request_id = usage
    unpriced_models = {call.model for call in scope.calls if call.cost is None} if unpriced else ()
    ctx.totals.add(tokens, cost, unpriced, unpriced_models)
    now = utcnow()
    step_changes: StepChanges = {
        "tokens_used": tokens,
        "cost_estimate": cost,
        "execution_time_ms": elapsed_ms,
        "completed_at": now,
        "llm_request_id": llm_request_id,
    }
    if result is not None:
        ctx.completed_steps += 1
        step_changes["status"] = _COMPLETED
        step_changes["outputs"] = {"output_content": to_jsonable(result.output_content)}
        step_changes["step_metadata"] = metadata_json
    else:
        step_changes["status"] = (RunStatus.CANCELLED if cancelled else RunStatus.FAILED).value
        step_changes["error_message"] = describe_error(error) if error is not None else None
    run_changes: RunChanges = {
        "step_progress": ctx.completed_steps,
        "total_tokens": ctx.totals.tokens,
        "total_cost": ctx.totals.cost,
        "unpriced_calls": ctx.totals.unpriced_calls,
        "last_heartbeat": now,
    }
    if ctx.total_steps:
        run_changes["progress_percentage"] = min(100.0, 100.0 * ctx.completed_steps / ctx.total_steps)
    if await ctx.store.finish_step(step_id, step_changes, ctx.run_id, run_changes):
        ctx.cancel_requested = True


def _replayed_result(ctx: RunContext, step: BaseStep, slot: tuple[int, str]) -> StepResult | None:
    """On resume: the stored result of the step completed at this position, or None to run it live."""
    order, key = slot
    record = ctx.replay.get(order)
    if record is None:
        return None
    if record.step_key != key:
        raise ResumeMismatch(
            f"cannot resume run {ctx.run_id}: step {order} was '{record.step_key}' in the original run, "
            f"but the flow now calls '{key}' there; its code changed — start a new run instead"
        )
    ctx.completed_steps += 1
    stored = (record.outputs or {}).get("output_content")
    metadata = {**(record.step_metadata or {}), "replayed": True}
    return StepResult(step_name=step.step_name, output_content=step.restore_output(stored), metadata=metadata)


async def _record_rejected_step(
    ctx: RunContext, step: BaseStep, slot: tuple[int, str], raw_inputs: Any, exc: Exception
) -> None:
    """A step inside a flow called with invalid inputs: keep a failed row saying why."""
    now = utcnow()
    record = StepRecord(
        flow_run_id=ctx.run_id,
        step_name=step.step_name,
        step_key=slot[1],
        step_type=step.step_type,
        step_order=slot[0],
        status=RunStatus.FAILED.value,
        inputs=to_jsonable(raw_inputs) if isinstance(raw_inputs, dict) else {},
        error_message=describe_error(exc),
        completed_at=now,
    )
    await ctx.store.start_step(record, {"current_step": slot[1], "last_heartbeat": now})
