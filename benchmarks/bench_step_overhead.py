"""The engine's own overhead per LLM step against calling litellm directly with the same offline model.

Both sides make the same ``litellm.acompletion`` call to the in-process ``offline`` provider. The
engine side runs an ``UnstructuredStep`` inside a flow (validation, prompt rendering, run context,
retry wrapper, usage/cost accounting, step and request records) on the in-memory store, so what is
measured is the engine, not a database (see bench_storage.py for persistence). Target (issue 2): the
overhead under 10% of litellm's own cost per call.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import header, row

PROMPT = "Summarize: the quick brown fox jumps over the lazy dog. " * 4


async def litellm_direct(n: int) -> float:
    from flow_engine.engine import get_engine
    from flow_engine.llm.loader import ensure_providers

    litellm = ensure_providers(get_engine().plugins.model_providers())
    messages = [{"role": "user", "content": PROMPT}]
    started = time.perf_counter()
    for _ in range(n):
        await litellm.acompletion(model="offline/default", messages=messages, max_retries=0, num_retries=0)
    return (time.perf_counter() - started) / n


async def engine_steps(n: int) -> float:
    from pydantic import BaseModel

    from flow_engine import BaseFlow, UnstructuredStep

    class Say(UnstructuredStep):
        step_name = "say"

        class Inputs(BaseModel):
            prompt: str

    class Many(BaseFlow):
        flow_name = "many"

        async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
            for _ in range(n):
                await Say().execute({"prompt": PROMPT})
            return {}

    started = time.perf_counter()
    await Many().execute({})
    return (time.perf_counter() - started) / n


async def measure(n: int, repeats: int) -> tuple[float, float]:
    direct, engine = [], []
    await litellm_direct(50)  # warm-up: first calls pay litellm's lazy imports
    await engine_steps(50)
    for _ in range(repeats):  # interleaved, so drift hits both sides alike
        direct.append(await litellm_direct(n))
        engine.append(await engine_steps(n))
    return statistics.median(direct), statistics.median(engine)


def main(n: int = 300, repeats: int = 7) -> dict[str, float]:
    import flow_engine

    flow_engine.configure(database_url="memory://", model="offline/default")
    header("Engine overhead per LLM step (offline model, in-memory store)")
    direct, engine = asyncio.run(measure(n, repeats))
    overhead = engine - direct
    row("litellm.acompletion directly (baseline)", f"{direct * 1e6:.0f} µs", "1.00x")
    row("UnstructuredStep in a flow", f"{engine * 1e6:.0f} µs", f"{engine / direct:.2f}x")
    row("engine overhead per step", f"{overhead * 1e6:.0f} µs", f"{overhead / direct:.0%}", "target < 10%")
    return {"direct": direct, "engine": engine, "overhead_ratio": overhead / direct}


if __name__ == "__main__":
    main()
