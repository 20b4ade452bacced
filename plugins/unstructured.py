"""Step type ``unstructured_llm``: a prompt in, text out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from flow_engine.llm.streaming import TextListener, listening
from flow_engine.plugin import LLMStep, StepOutput, StepResult, StepType, StepTypeInfo, hookimpl


class UnstructuredStep(LLMStep):
    """Generates text. ``result.output_content`` is the model's text."""

    step_type = StepType.UNSTRUCTURED_LLM

    async def run(self, inputs: Any) -> StepOutput:
        from flow_engine.plugin import complete

        messages = self.build_messages(inputs)  # before the model: a missing prompt is not about models
        model = self.call_model()
        call = await complete(
            messages, model=model, api_base=self.resolve_api_base(), **self.call_params(model)
        )
        return StepOutput(content=call.text or "", provider=call.provider, model=model)

    async def execute(  # type: ignore[override]
        self, inputs: Any, *, model: str | None = None, on_text: TextListener | None = None
    ) -> StepResult:
        """As ``BaseStep.execute``; with ``on_text``, the answer streams to it piece by piece as the
        model writes it (the result, tokens and cost are the same as without)."""
        if on_text is None:
            return await super().execute(inputs, model=model)
        with listening(on_text):
            return await super().execute(inputs, model=model)

    async def stream(self, inputs: Any, *, model: str | None = None) -> AsyncIterator[str]:
        """``async for piece in step.stream(inputs)``: the answer's text as it is written. The step is
        recorded as by ``execute``; its error, if any, is raised from the loop."""
        pieces: asyncio.Queue[str | None] = asyncio.Queue()
        task = asyncio.ensure_future(self.execute(inputs, model=model, on_text=pieces.put_nowait))
        task.add_done_callback(lambda _: pieces.put_nowait(None))
        try:
            while (piece := await pieces.get()) is not None:
                yield piece
            await task
        finally:
            if not task.done():
                task.cancel()


@hookimpl
def register_step_types(register: Any) -> None:
    register(StepTypeInfo(StepType.UNSTRUCTURED_LLM, UnstructuredStep, "text generation"))
