"""A batch of many items (issue 18): ``run_batch`` (what ``flow batch`` runs) against the same flows
started with ``asyncio.gather`` under a semaphore, on a SQLite file, with the offline model.

Each measurement runs in a fresh subprocess (so peak memory, ``ru_maxrss``, is that run's alone):
throughput in items per second at 10,000 items, both sides alternating; then peak memory of a batch of
1,000 and of 10,000 items at the same concurrency (target: within 20 %).

    python benchmarks/bench_batch.py [--items 10000] [--small 1000] [--concurrency 16] [--repeat 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import PYTHON, header, row


def _flow_class() -> Any:
    from pydantic import BaseModel

    from flow_engine import BaseFlow, StructuredStep, UnstructuredStep

    class Extract(UnstructuredStep):
        step_name = "bench_extract"

        class Inputs(BaseModel):
            prompt: str

    class Summary(BaseModel):
        title: str
        summary: str

    class Summarize(StructuredStep):
        step_name = "bench_summarize"
        Outputs = Summary

        class Inputs(BaseModel):
            prompt: str

    class TwoSteps(BaseFlow):
        flow_name = "bench_two_steps"

        class Inputs(BaseModel):
            text: str

        async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
            extracted = await Extract().execute({"prompt": f"Extract the main point of: {inputs['text']}"})
            summary = await Summarize().execute({"prompt": f"Summarize: {extracted.output_content}"})
            return {"title": summary.output_content.title}

    return TwoSteps


def _child(mode: str, items: int, concurrency: int, folder: str) -> None:
    """One measurement in this (fresh) process; prints a JSON line."""
    from flow_engine import configure

    configure(database_url=f"sqlite:///{folder}/bench.db", model="offline/default", data_dir=folder)
    flow_cls = _flow_class()
    texts = [f"Item {i}: cats sleep sixteen hours a day and dogs less." for i in range(items)]

    async def with_batch() -> None:
        from flow_engine.batch import BatchItem, new_batch_id, run_batch

        batch = [BatchItem(i + 1, {"text": t}) for i, t in enumerate(texts)]
        results = await run_batch(
            flow_cls, batch, batch_id=new_batch_id(), concurrency=concurrency, keep_outputs=False
        )
        assert all(r.status == "completed" for r in results)

    async def with_gather() -> None:
        gate = asyncio.Semaphore(concurrency)

        async def one(text: str) -> None:
            async with gate:
                await flow_cls().execute({"text": text})

        await asyncio.gather(*(one(t) for t in texts))

    async def warm_up() -> None:  # litellm's import and first call: not what is measured
        await flow_cls().execute({"text": "warm up"})

    asyncio.run(warm_up())
    started = time.perf_counter()
    asyncio.run(with_batch() if mode == "batch" else with_gather())
    seconds = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": seconds, "peak_mb": peak_kb / 1024}), flush=True)


def _measure(mode: str, items: int, concurrency: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLOW_ENGINE_")}
        env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
        out = subprocess.run(
            [
                PYTHON,
                __file__,
                "--child",
                mode,
                "--items",
                str(items),
                "--concurrency",
                str(concurrency),
                folder,
            ],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
        return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--child", metavar="MODE")
    parser.add_argument("folder", nargs="?")
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.items, args.concurrency, args.folder)
        return
    header(f"batch: {args.items:,} items of a 2-step offline flow, SQLite, concurrency {args.concurrency}")
    batch_rates, gather_rates = [], []
    big_memory: list[float] = []
    for _ in range(args.repeat):
        for mode in ("gather", "batch"):
            result = _measure(mode, args.items, args.concurrency)
            rate = args.items / result["seconds"]
            (batch_rates if mode == "batch" else gather_rates).append(rate)
            if mode == "batch":
                big_memory.append(result["peak_mb"])
            row(
                f"{mode}: {args.items:,} items",
                f"{rate:,.0f} items/s",
                "",
                f"peak {result['peak_mb']:.0f} MB",
            )
    batch_rate, gather_rate = max(batch_rates), max(gather_rates)
    row(
        "flow batch throughput against asyncio.gather + semaphore",
        f"{batch_rate:,.0f}/s",
        f"{batch_rate / gather_rate:.2f}x",
    )
    small = _measure("batch", args.small, args.concurrency)
    big = min(big_memory)
    growth = big / small["peak_mb"] - 1
    row(f"peak memory: {args.small:,} items", f"{small['peak_mb']:.0f} MB")
    row(f"peak memory: {args.items:,} items", f"{big:.0f} MB", f"{growth:+.0%}", "target: within 20 %")


if __name__ == "__main__":
    main()
