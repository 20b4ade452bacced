"""Waiting for a person: a flow asks for input (``BaseFlow.wait_for_input``), its run is recorded
``waiting`` and the process is free to exit; the answer, given later from any process
(``flow_engine.respond.respond_to_run``), continues the run in place.

What a run waits for is a step row of type ``human_input`` at the wait's place in the run: status
``waiting``, its inputs the question (``prompt``, the answer's JSON ``schema``, the ``deadline``), its
``created_at`` when the wait began. The answer completes that row with the validated data as its
output, so a resume replays it like any completed step (no question asked twice) and the steps before
it are replayed from the store with no LLM call.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from .context import current_run
from .errors import InputValidationError, ResumeMismatch, RunWaiting, UsageError
from .storage import RunStatus, StepRecord, utcnow

STEP_TYPE = "human_input"
WAITING = RunStatus.WAITING.value

M = TypeVar("M", bound=BaseModel)


async def wait_for_input(
    flow_name: str,
    name: str,
    model: type[M],
    *,
    prompt: str | None = None,
    timeout: float | timedelta | None = None,  # noqa: ASYNC109 - a deadline for the answer, not an await
) -> M:
    """The answer to ``name`` if the run already has it (a resumed run), else record the wait and
    raise :class:`RunWaiting` (the runner records the run ``waiting`` and ends it there)."""
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise UsageError(f"wait_for_input('{name}', ...): the answer's type must be a pydantic model")
    ctx = current_run.get()
    if ctx is None or ctx.flow_name != flow_name:
        raise UsageError(f"wait_for_input('{name}') must be called inside the running flow '{flow_name}'")
    ctx.check_boundary()
    order, key = ctx.next_step_slot(name)
    record = ctx.replay.get(order)
    if record is not None:
        if record.step_key != key:
            raise ResumeMismatch(
                f"cannot continue run {ctx.run_id}: step {order} was '{record.step_key}', "
                f"but the flow now waits for input '{key}' there; its code changed — start a new run"
            )
        ctx.completed_steps += 1
        try:
            return model.model_validate((record.outputs or {}).get("output_content"))
        except ValidationError as exc:
            raise InputValidationError.from_pydantic(f"the answer to '{key}'", exc) from None
    seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
    if seconds is not None and not seconds > 0:
        raise UsageError(f"wait_for_input('{name}'): timeout must be a positive number of seconds")
    now = utcnow()
    schema = model.model_json_schema()
    question = {
        "prompt": prompt,
        "schema": schema,
        "deadline": (now + timedelta(seconds=seconds)).isoformat() if seconds is not None else None,
    }
    step = StepRecord(
        flow_run_id=ctx.run_id,
        step_name=name,
        step_key=key,
        step_type=STEP_TYPE,
        step_order=order,
        status=WAITING,
        inputs=question,
        created_at=now,
    )
    await ctx.store.start_step(step, {"current_step": key, "last_heartbeat": now})
    raise RunWaiting(ctx.run_id, key, prompt, schema)


def waiting_step(steps: list[StepRecord]) -> StepRecord | None:
    """The step a waiting run waits at (its one ``waiting`` step of type ``human_input``)."""
    return next((s for s in steps if s.step_type == STEP_TYPE and s.status == WAITING), None)


def describe_wait(step: StepRecord) -> dict[str, Any]:
    """What ``flow show`` / ``--json`` say a run waits for."""
    question = step.inputs or {}
    return {
        "name": step.step_key,
        "prompt": question.get("prompt"),
        "since": step.created_at.isoformat(),
        "deadline": question.get("deadline"),
        "schema": question.get("schema"),
    }


def is_text_field(field: Any) -> bool:
    """Is this property of an answer's JSON schema text (a string, or a string or null)?"""
    if not isinstance(field, dict):
        return False
    kinds = [field.get("type")] + [option.get("type") for option in field.get("anyOf") or []]
    return "string" in kinds and not {"boolean", "integer", "number", "object", "array"} & set(kinds)


def field_value(field: Any, text: str) -> Any:
    """A field of an answer typed as text (``flow respond --input``, the viewer's form): kept as it is
    where the schema says the field is text, else read as JSON (``true`` a boolean, ``3`` a number);
    text that is not JSON stays text, for the schema check to name."""
    if is_text_field(field):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text
