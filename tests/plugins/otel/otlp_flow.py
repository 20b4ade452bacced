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


if __name__ == "__main__":
    asyncio.run(Exported().execute({}))  # the SDK flushes its batch at exit
