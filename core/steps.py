"""Steps: the unit of work a flow records. ``BaseStep`` is plain Python; LLM step types subclass it."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from pydantic import BaseModel, ValidationError

from .context import current_run
from .engine import get_engine
from .errors import InputValidationError, UsageError
from .jsonable import storable_inputs
from .step_runner import StepOutput, StepResult, run_step

__all__ = ["BaseStep", "StepOutput", "StepResult", "StepType"]


class _StepTypeNames(type):
    def __getattr__(cls, name: str) -> str:
        """``StepType.IMAGE_GENERATION``: a registered step type by its name in capitals."""
        if name.isupper() and name.lower() in get_engine().plugins.step_types():
            return name.lower()
        raise AttributeError(f"no step type {name.lower()!r} is registered (StepType.{name})")


class StepType(metaclass=_StepTypeNames):
    """Names of step types. The registry is open: plugins add more names, each also readable here in
    capitals (``StepType.IMAGE_GENERATION`` once the image plugin is loaded)."""

    PYTHON = "python"
    UNSTRUCTURED_LLM = "unstructured_llm"
    STRUCTURED_LLM = "structured_llm"

    @staticmethod
    def registered() -> list[str]:
        """Every step type name registered by the loaded plugins."""
        return sorted(get_engine().plugins.step_types())


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class BaseStep:
    """A step. Subclass it with ``async def run(self, inputs)`` for plain Python work (no LLM call).

    Class attributes: ``step_name`` (defaults to the class name in snake_case), ``Inputs`` (a pydantic
    model; ``run`` then receives an instance of it), ``prompt_file``, ``model``, ``api_base``,
    ``cache`` (the response cache for its LLM calls).
    """

    step_type: ClassVar[str] = StepType.PYTHON
    step_name: ClassVar[str]
    prompt_file: ClassVar[str | None] = None
    Inputs: ClassVar[type[BaseModel] | None] = None
    model: ClassVar[str | None] = None
    api_base: ClassVar[str | None] = None
    # the response cache for this step's LLM calls: True / False, or None to follow the run and
    # FLOW_ENGINE_CACHE (docs/caching.md)
    cache: ClassVar[bool | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "step_name" not in cls.__dict__:
            cls.step_name = _snake(cls.__name__.removesuffix("Step") or cls.__name__)

    async def execute(
        self, inputs: dict[str, Any] | BaseModel | None = None, *, model: str | None = None
    ) -> StepResult:
        """Validate ``inputs``, run the step, record it in the current run, return a ``StepResult``."""
        return await run_step(self, inputs, model_override=model)

    async def run(self, inputs: Any) -> Any:
        """Do the step's work. Plain Python steps override this; LLM step types implement it."""
        raise UsageError(
            f"{type(self).__name__} defines no 'async def run(self, inputs)'; implement it, or subclass "
            "UnstructuredStep / StructuredStep / ImageStep for an LLM step"
        )

    @classmethod
    def restore_output(cls, stored: Any) -> Any:
        """Turn a stored ``output_content`` back into what ``run`` returned (used when resuming).

        Plain values come back as they are; a step returning a pydantic model should override this.
        """
        return stored

    # -- helpers shared by step types -------------------------------------------------------
    @classmethod
    def validate_inputs(cls, inputs: dict[str, Any] | BaseModel | None) -> Any:
        """The step's inputs, validated; a run stores them, so what it cannot store is refused."""
        validated = cls._validated(inputs)
        storable_inputs(validated, f"step '{cls.step_name}'", InputValidationError)
        return validated

    @classmethod
    def _validated(cls, inputs: dict[str, Any] | BaseModel | None) -> Any:
        if cls.Inputs is None:
            if inputs is None:
                return {}
            if isinstance(inputs, BaseModel):
                return inputs.model_dump()
            if not isinstance(inputs, dict):
                problem = {"loc": (), "msg": f"expected a dict, got {type(inputs).__name__}"}
                raise InputValidationError(f"step '{cls.step_name}'", [problem])
            return dict(inputs)
        if isinstance(inputs, cls.Inputs):
            return inputs
        if isinstance(inputs, BaseModel):
            inputs = inputs.model_dump()
        try:
            return cls.Inputs.model_validate(inputs if inputs is not None else {})
        except ValidationError as exc:
            raise InputValidationError.from_pydantic(f"step '{cls.step_name}'", exc) from None

    def resolve_model(self, override: str | None) -> str:
        """per-call override > step class ``model`` > run-level model > FLOW_ENGINE_MODEL > offline."""
        if override:
            return override
        if self.model:
            return self.model
        ctx = current_run.get()
        run_model = ctx.run_level_model() if ctx else None
        if run_model:
            return run_model
        return get_engine().default_model()

    def resolve_api_base(self) -> str | None:
        return self.api_base or get_engine().settings.api_base
