"""Flows: the user API. Subclass ``BaseFlow`` with ``Inputs``/``Outputs`` and ``_execute_flow_logic``;
``execute``, ``submit`` and ``resume`` hand the run to the flow runner (``flow_runner.py``), which owns
the recorded run from its start to its end. A flow executed inside another flow is a child run of it."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import timedelta
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from . import fan_out, flow_runner, human_input
from .context import RunContext
from .errors import InputValidationError
from .flow_runner import flow_reference
from .jsonable import storable_inputs
from .storage import RunRecord

M = TypeVar("M", bound=BaseModel)

__all__ = ["BaseFlow", "flow_reference"]


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
        if cls.Inputs is None:  # what a run cannot store (too deep, NaN, NUL, surrogates) is refused
            storable_inputs(inputs, owner, InputValidationError)
            return dict(inputs)
        try:
            validated = cls.Inputs.model_validate(inputs).model_dump()
        except ValidationError as exc:
            raise InputValidationError.from_pydantic(owner, exc) from None
        except (ValueError, RecursionError) as exc:  # pydantic's own limits (nesting depth)
            raise InputValidationError(owner, [{"loc": (), "msg": str(exc)}]) from None
        storable_inputs(validated, owner, InputValidationError)
        return validated

    async def execute(
        self,
        inputs: dict[str, Any] | BaseModel | None = None,
        *,
        user_id: uuid.UUID | str | None = None,
        model: str | None = None,
        metadata: dict[str, Any] | None = None,
        max_cost: float | None = None,
        max_tokens: int | None = None,
        cache: bool | None = None,
    ) -> dict[str, Any]:
        """Validate ``inputs``, run the flow as a recorded run, return its outputs dict.

        The run's id is on ``self.run_id`` as soon as the run row exists. ``max_cost`` (USD) and
        ``max_tokens`` stop the run at a step boundary once reached. ``cache=True`` answers the run's
        repeated LLM calls from the response cache (``False``: never, whatever FLOW_ENGINE_CACHE says).
        """
        return await flow_runner.start(
            self,
            inputs,
            user_id=user_id,
            model=model,
            metadata=metadata,
            max_cost=max_cost,
            max_tokens=max_tokens,
            cache=cache,
        )

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
        cache: bool | None = None,
    ) -> uuid.UUID:
        """Run the flow in the background: validate ``inputs``, store the run as ``pending``, hand it to
        ``executor`` (default ``FLOW_ENGINE_EXECUTOR``, else ``local``) and return its id at once.

        Follow it with ``flow runs`` / ``flow show``; ``flow_engine.submit.wait_for_run(run_id)`` waits
        for its end. See docs/background.md.
        """
        return await flow_runner.submit(
            self,
            inputs,
            user_id=user_id,
            executor=executor,
            model=model,
            metadata=metadata,
            max_cost=max_cost,
            max_tokens=max_tokens,
            cache=cache,
        )

    async def map(
        self,
        target: Any,
        items: Iterable[dict[str, Any] | BaseModel],
        *,
        concurrency: int = 8,
        on_error: Literal["stop", "collect"] = "stop",
        model: str | None = None,
    ) -> list[Any]:
        """Run ``target`` (a step class or instance, or a flow class) once per item of ``items`` (input
        dicts or models), at most ``concurrency`` at once; return the results in input order
        (``StepResult`` per step, outputs dict per child flow).

        Each item is its own keyed step or child run, reserved in input order before any starts, so
        a resumed run replays the items that completed and runs only the rest. ``on_error="stop"``
        cancels the items running and raises the first failure; ``"collect"`` goes on and leaves the
        exception in the failed item's place."""
        return await fan_out.map_items(target, items, concurrency=concurrency, on_error=on_error, model=model)

    async def wait_for_input(
        self,
        name: str,
        answer: type[M],
        *,
        prompt: str | None = None,
        timeout: float | timedelta | None = None,  # noqa: ASYNC109 - a deadline for the answer, not an await
    ) -> M:
        """Stop here until a person answers ``name`` with data valid for the pydantic model ``answer``.

        The first time, the run is recorded ``waiting`` (what it waits for: ``name``, the answer's JSON
        schema, ``prompt``, since when, the deadline ``timeout`` seconds away) and ``execute()`` raises
        ``RunWaiting``; the process may exit. ``respond_to_run(run_id, name, data)`` (``flow respond``)
        validates the answer and continues the run in place: the steps before the wait are replayed
        from the store (no LLM call) and this call returns the answer as an ``answer`` instance."""
        return await human_input.wait_for_input(self.flow_name, name, answer, prompt=prompt, timeout=timeout)

    async def resume(
        self,
        run: RunRecord | uuid.UUID | str,
        *,
        model: str | None = None,
        max_cost: float | None = None,
        max_tokens: int | None = None,
        parent: RunContext | None = None,
        force: bool = False,
    ) -> dict[str, Any]:
        """Run a stored run again in place: completed steps return their stored outputs (no LLM call),
        execution goes on live from the first step without one. ``flow_engine.resume_run(run_id)`` finds
        the flow class by itself; this method is for a class it cannot import (defined in a function).

        The run keeps the run-level model and budget it was started with unless ``model`` /
        ``max_cost`` / ``max_tokens`` are given; a budget given here replaces the run's whole budget
        (``max_tokens`` alone lifts an earlier ``max_cost``), the class attributes filling the rest.

        A run still ``running`` with a fresh heartbeat is refused (``UsageError``) unless ``force``."""
        return await flow_runner.resume(
            self,
            run,
            model=model,
            max_cost=max_cost,
            max_tokens=max_tokens,
            parent=parent,
            claim=parent is None,
            force=force,
        )
