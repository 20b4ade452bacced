"""Fan-out inside a flow: one step or child flow per item, at most ``concurrency`` at once.

Every item gets its place in the run before the first one starts (steps: the next occurrences of the
step's key, ``name``, ``name#2``, ...; child flows: the next child keys), in input order. So a resumed
run finds each completed item by its key and replays it (no LLM call), and only the rest run again,
whatever order they finished in the first time. Workers pull the next item when one is done, so
10,000 items cost ``concurrency`` tasks, not 10,000.

Failure policy: ``on_error="stop"`` (default) cancels the items still running (recorded cancelled)
and raises the first failure; ``"collect"`` goes on and puts each failure's exception in its item's
place in the results. A cancelled run or a spent budget stops the whole map either way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from . import flow_runner
from .context import current_run
from .errors import BudgetExceeded, RunCancelled, UsageError
from .step_runner import run_step

if TYPE_CHECKING:  # pragma: no cover
    from .flows import BaseFlow
    from .steps import BaseStep

OnError = Literal["stop", "collect"]


async def map_items(
    target: Any,
    items: Iterable[dict[str, Any] | BaseModel],
    *,
    concurrency: int,
    on_error: OnError = "stop",
    model: str | None = None,
) -> list[Any]:
    """``target`` (a step class or instance, or a flow class) run once per item; results in input
    order: ``StepResult`` for a step, the outputs dict for a flow (an exception in its place when it
    failed and ``on_error="collect"``)."""
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise UsageError(f"map(): concurrency must be a whole number >= 1, not {concurrency!r}")
    if on_error not in ("stop", "collect"):
        raise UsageError(f"map(): on_error must be 'stop' or 'collect', not {on_error!r}")
    todo = list(items)
    run_one = _runner(target, len(todo), model)
    results: list[Any] = [None] * len(todo)
    queue = iter(range(len(todo)))

    async def worker() -> None:
        for index in queue:  # shared by the workers: each takes the next item when it is free
            try:
                results[index] = await run_one(index, todo[index])
            except (RunCancelled, BudgetExceeded):
                raise  # the whole run stops, whatever the policy for one item's failure
            except Exception as exc:
                if on_error == "stop":
                    raise
                results[index] = exc

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(min(concurrency, len(todo))):
                group.create_task(worker())
    except BaseExceptionGroup as failed:  # the first failure, as the caller would get it from a loop
        raise _first(failed) from None
    return results


def _first(group: BaseExceptionGroup[Any]) -> BaseException:
    error: BaseException = group.exceptions[0]
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


# told apart by what they have (this module sits below flows.py and steps.py, which use it)
def _is_flow(cls: type) -> bool:
    return hasattr(cls, "_execute_flow_logic") and hasattr(cls, "flow_name")


def _is_step(cls: type) -> bool:
    return hasattr(cls, "step_type") and hasattr(cls, "step_name") and hasattr(cls, "restore_output")


def _runner(target: Any, count: int, model: str | None) -> Any:
    """``run_one(index, inputs)`` for ``target``, with each item's place reserved now, in input order."""
    ctx = current_run.get()
    if isinstance(target, type) and _is_flow(target):
        flow_cls: type[BaseFlow] = target
        keys = [ctx.next_child_key(flow_cls.flow_name) for _ in range(count)] if ctx else [None] * count

        async def run_flow(index: int, inputs: Any) -> dict[str, Any]:
            flow = flow_cls()
            return await flow_runner.start(flow, inputs, model=model, run_key=keys[index])

        return run_flow
    if _is_flow(type(target)):
        raise UsageError(
            f"map() takes a flow class (one instance per item), not an instance of {type(target).__name__}"
        )
    if isinstance(target, type) and _is_step(target):
        target = target()
    if not _is_step(type(target)):
        raise UsageError(f"map() runs a step or a flow class, not {target!r}")
    step: BaseStep = target
    slots = [ctx.next_step_slot(step.step_name) for _ in range(count)] if ctx else [None] * count

    async def run_mapped_step(index: int, inputs: Any) -> Any:
        return await run_step(step, inputs, model_override=model, slot=slots[index])

    return run_mapped_step
