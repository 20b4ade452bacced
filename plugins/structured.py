"""Step type ``structured_llm``: a prompt in, a validated ``Outputs`` instance out."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel

from flow_engine.plugin import LLMStep, StepOutput, StepType, StepTypeInfo, UsageError, get_engine, hookimpl


class StructuredStep(LLMStep):
    """Generates data matching ``Outputs``; ``result.output_content`` is an ``Outputs`` instance.

    ``structured_output`` picks how the JSON is asked for: ``"auto"`` (native JSON schema where litellm
    says the model supports it, else JSON mode with the schema in the prompt, falling back when a
    server rejects a way), ``"native"``, ``"json"`` or ``"prompt"`` (schema in the prompt only).
    The answer is always validated with pydantic; an invalid one is re-asked with the validation errors
    up to ``max_reasks`` times (default FLOW_ENGINE_STRUCTURED_MAX_REASKS), then the step fails with a
    ``StructuredOutputError`` showing the last errors. ``result.metadata["structured_mode"]`` says
    which way was used.
    """

    step_type = StepType.STRUCTURED_LLM
    Outputs: ClassVar[type[BaseModel] | None] = None
    structured_output: ClassVar[Literal["auto", "native", "json", "prompt"]] = "auto"
    max_reasks: ClassVar[int | None] = None

    async def run(self, inputs: Any) -> StepOutput:
        from flow_engine.llm.structured import complete_structured

        if self.Outputs is None:
            raise UsageError(f"structured step '{self.step_name}' must define an Outputs pydantic model")
        engine = get_engine()
        messages = self.build_messages(inputs)  # before the model: a missing prompt is not about models
        model = self.call_model()
        reasks = self.max_reasks if self.max_reasks is not None else engine.settings.structured_max_reasks
        obj, call, mode = await complete_structured(
            messages,
            self.Outputs,
            model=model,
            api_base=self.resolve_api_base(),
            providers=engine.plugins.model_providers(),
            max_reasks=reasks,
            mode=self.structured_output,
            **self.call_params(model),
        )
        extra: dict[str, Any] = {"structured_mode": mode}
        if call.fallbacks:
            extra["structured_fallbacks"] = call.fallbacks
        return StepOutput(content=obj, provider=call.provider, model=model, extra=extra)

    @classmethod
    def restore_output(cls, stored: Any) -> Any:
        """Turn a stored output back into an ``Outputs`` instance (used when resuming)."""
        return cls.Outputs.model_validate(stored) if cls.Outputs is not None else stored


@hookimpl
def register_step_types(register: Any) -> None:
    register(StepTypeInfo(StepType.STRUCTURED_LLM, StructuredStep, "structured data generation"))
