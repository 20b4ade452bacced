"""Run by test_otlp.py in a subprocess with no provider set: the plugin's own OTLP/HTTP exporter."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel

from flow_engine import BaseFlow, UnstructuredStep


class Echo(UnstructuredStep):
    step_name = "echo"

    class Inputs(BaseModel):
        prompt: str


class Exported(BaseFlow):
    flow_name = "exported"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        result = await Echo().execute({"prompt": "Say hello"})
        return {"text": result.output_content}


def main() -> None:
    """Run the flow with the providers the command line asks the application to set first: none
    (``own``: the plugin makes its own), or only a tracer provider (``tracing-only``: spans in memory).
    Prints what the application's globals and the spans are afterwards, as JSON."""
    import json
    import sys

    from opentelemetry import metrics, trace

    memory = provider = None
    if sys.argv[1:] == ["tracing-only"]:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        memory, provider = InMemorySpanExporter(), TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(memory))
        trace.set_tracer_provider(provider)
    asyncio.run(Exported().execute({}))  # the SDK flushes its batch at exit
    tracer_provider = trace.get_tracer_provider()
    print(
        json.dumps(
            {
                "tracer_provider": type(tracer_provider).__name__,
                "same_tracer_provider": provider is None or tracer_provider is provider,
                "meter_provider": type(metrics.get_meter_provider()).__name__,
                "spans_in_memory": [s.name for s in memory.get_finished_spans()] if memory else None,
            }
        )
    )


if __name__ == "__main__":
    main()
