"""Step type ``unstructured_llm``: a prompt in, text out."""

from __future__ import annotations

from typing import Any

from flow_engine.hookspecs import hookimpl
from flow_engine.llm_step import LLMStep
from flow_engine.plugin_types import StepTypeInfo
from flow_engine.steps import StepOutput, StepType


class UnstructuredStep(LLMStep):
    """Generates text. ``result.output_content`` is the model's text."""

    step_type = StepType.UNSTRUCTURED_LLM

    async def run(self, inputs: Any) -> StepOutput:
        from flow_engine.llm.calls import complete  # not via the watched package: per call

        messages = self.build_messages(inputs)  # before the model: a missing prompt is not about models
        model = self.call_model()
        call = await complete(
            messages, model=model, api_base=self.resolve_api_base(), **self.call_params(model)
        )
        return StepOutput(content=call.text or "", provider=call.provider, model=model)


@hookimpl
def register_step_types(register: Any) -> None:
    register(StepTypeInfo(StepType.UNSTRUCTURED_LLM, UnstructuredStep, "text generation"))
