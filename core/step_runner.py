"""Running one step: validate, record the start, run, record the end, fire the lifecycle hooks.

Inside a flow the step gets its place in the run (order and key) before its first ``await``, so steps
started together with ``asyncio.gather`` keep their call order. Outside a flow it runs untracked
(its LLM calls are still recorded).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from .context import RunContext, StepScope, current_run, current_step
from .engine import get_engine
from .errors import FlowEngineError, InputValidationError, ResumeMismatch, StorageError, UsageError
from .ids import new_id
from .jsonable import NotStorable, describe_error, storable, to_jsonable
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


class UnpricedModelWarning(UserWarning):
    """A model without a known price was called: ``StepResult.metadata["cost_estimate"]`` is 0.0 with
    ``cost_known=False`` (so the seed's ``a + b`` arithmetic works), while every record says unknown."""


log = logging.getLogger("flow_engine")
_warned_unpriced: set[str] = set()
_warned_lock = threading.Lock()

# the statuses as plain strings, read once (an enum member's ``.value`` is a property call per use)
_RUNNING = RunStatus.RUNNING.value
_COMPLETED = RunStatus.COMPLETED.value


def _unknown_step_type(step: BaseStep, registry: dict[str, Any], conflicts: dict[str, str]) -> UsageError:
    if step.step_type in conflicts:
        return UsageError(f"step '{step.step_name}' cannot run: {conflicts[step.step_type]}")
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


def _notice_unpriced(models: Any) -> None:
    """Warn once per model (per process) that its cost is unknown and counted as 0.0 in results."""
    with _warned_lock:
        new = sorted(m for m in models if m not in _warned_unpriced)
        _warned_unpriced.update(new)
    for model in new:
        warnings.warn(
            f"model '{model}' has no known price: StepResult.metadata['cost_estimate'] counts its calls "
            "as 0.0 (metadata['cost_known'] is False); runs and `flow show` say the cost is unknown",
            UnpricedModelWarning,
            stacklevel=4,
        )


def _storable_output(name: str, content: Any) -> Any:
    try:
        return storable(content, "output")
    except NotStorable as exc:
        raise FlowEngineError(
            f"step '{name}' returned a value that cannot be stored ({exc}); a step returns JSON "
            "values, a pydantic model or a dataclass (tuples become lists)"
        ) from None


async def report_hook(plugins: Any, hook_name: str, **kwargs: Any) -> None:
    """Fire a hook that comes after the fact: its error is reported, never substituted for the
    stored outcome (docs/plugins.md, "Hook errors")."""
    try:
        await plugins.fire(hook_name, **kwargs)
    except Exception as exc:
        message = f"a plugin's {hook_name} hook raised {describe_error(exc)}; the stored outcome stands"
        log.warning(message)
        warnings.warn(message, RuntimeWarning, stacklevel=2)


async def run_step(
    step: BaseStep, raw_inputs: Any, *, model_override: str | None, slot: tuple[int, str] | None = None
) -> StepResult:
    """``slot``: the step's place in the run when the caller reserved it (``map``), else the next one."""
    engine = get_engine()
    plugins = engine.plugins
    step_types = plugins.step_types()
    if step.step_type not in step_types:
        raise _unknown_step_type(step, step_types, plugins.step_type_conflicts)
    ctx = current_run.get()
    name = step.step_name
    if ctx is None:
        slot = None
    else:
        ctx.check_boundary()
        if slot is None:
            slot = ctx.next_step_slot(name)
        if ctx.replay:
            replayed = _replayed_result(ctx, step, slot)
            if replayed is not None:
                await _fire_replayed(plugins, ctx, step, slot, replayed)
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
        run_id=ctx.run_id if ctx else None,
        step_id=step_id,
        step_name=name,
        model_override=model_override,
        cache=step.cache,
    )
    token = current_step.set(scope)
    started = time.perf_counter()
    try:
        if event is not None:
            await plugins.fire("before_step", event=event)
        raw_output = await step.run(inputs)
        output = raw_output if isinstance(raw_output, StepOutput) else StepOutput(content=raw_output)
        content_json = _storable_output(name, output.content)
        if isinstance(output.content, tuple):  # the caller sees what a replay would return
            output.content = content_json
    except BaseException as exc:
        elapsed_ms = int((time.perf_counter() - started) * 1000)
        cancelled = isinstance(exc, asyncio.CancelledError | KeyboardInterrupt)
        if ctx is not None and step_id is not None:
            await _finish(ctx, scope, step_id, elapsed_ms, _usage_of(scope), error=exc, cancelled=cancelled)
        if event is not None:
            event.error = exc
            if not cancelled:
                await report_hook(plugins, "on_step_error", event=event)
        raise
    finally:
        current_step.reset(token)
    elapsed_ms = int((time.perf_counter() - started) * 1000)
    usage = _usage_of(scope)
    tokens, cost, unpriced, llm_request_id = usage
    last_call = scope.calls[-1] if scope.calls else None  # a step type need not build a StepOutput
    metadata: dict[str, Any] = {
        "tokens_used": tokens,
        "cost_estimate": cost,
        "cost_known": cost is not None,
        "execution_time_ms": elapsed_ms,
        "provider": output.provider or (last_call.provider if last_call else None),
        "model": output.model or (last_call.model if last_call else None),
        "step_type": step.step_type,
        "llm_calls": len(scope.calls),
        "unpriced_calls": unpriced,
        **output.extra,
    }
    if ctx is not None and slot is not None:
        metadata.update(run_id=ctx.run_id_text, step_key=slot[1], step_order=slot[0])
    if llm_request_id is not None:
        metadata["llm_request_id"] = str(llm_request_id)
    # the records say "unknown" (None); the result says 0.0 so that adding costs works (cost_known)
    result_metadata = metadata if cost is not None else {**metadata, "cost_estimate": 0.0}
    result = StepResult(step_name=name, output_content=output.content, metadata=result_metadata)
    if unpriced:
        _notice_unpriced({call.model for call in scope.calls if call.cost is None})
    if ctx is not None and step_id is not None:
        # the runner's own values are JSON already, a step type's extras may not be
        stored = to_jsonable(metadata) if output.extra else metadata
        await _finish(
            ctx,
            scope,
            step_id,
            elapsed_ms,
            usage,
            result=result,
            content_json=content_json,
            metadata_json=stored,
        )
    if event is not None:
        event.result = result
        await report_hook(plugins, "after_step", event=event)
    return result


async def _fire_replayed(
    plugins: Any, ctx: RunContext, step: BaseStep, slot: tuple[int, str], result: StepResult
) -> None:
    """A resumed run's replayed step: ``after_step`` with ``event.replayed`` True (no before_step)."""
    if not plugins.step_hooks_listened():
        return
    record = ctx.replay[slot[0]]
    event = StepEvent(
        run_id=ctx.run_id,
        step_id=record.id,
        step_name=step.step_name,
        step_key=slot[1],
        step_type=step.step_type,
        step_order=slot[0],
        total_steps=ctx.total_steps,
        inputs=record.inputs or {},
        result=result,
        replayed=True,
    )
    await report_hook(plugins, "after_step", event=event)


async def _finish(
    ctx: RunContext,
    scope: StepScope,
    step_id: Any,
    elapsed_ms: int,
    usage: tuple[int, float | None, int, Any],
    *,
    result: StepResult | None = None,
    content_json: Any = None,
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
        step_changes["outputs"] = {"output_content": content_json}
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
    try:
        cancel = await ctx.store.finish_step(step_id, step_changes, ctx.run_id, run_changes)
    except Exception as exc:  # the row must not stay running: record it failed, then fail the run
        why = "result" if result is not None else "error"
        failed: StepChanges = {
            "status": RunStatus.FAILED.value,
            "completed_at": now,
            "error_message": ascii(f"the step's {why} could not be stored: {describe_error(exc)}"),
        }
        await ctx.store.finish_step(step_id, failed, ctx.run_id, {"last_heartbeat": now})
        if result is None:
            return  # the caller re-raises the step's own error
        ctx.completed_steps -= 1
        raise StorageError(f"step '{scope.step_name}': its result could not be stored: {exc}") from exc
    if cancel:
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
    if metadata.get("cost_estimate") is None and "tokens_used" in metadata:  # unpriced: as when live
        metadata.update(cost_estimate=0.0, cost_known=False)
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
