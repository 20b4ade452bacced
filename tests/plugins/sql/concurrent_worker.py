"""One process of the multi-process SQLite test (run as a script by test_concurrent_processes.py).

Usage: ``python concurrent_worker.py URL FLOWS READY_FILE GO_FILE``. Imports everything, touches
READY_FILE, waits for GO_FILE (so that every process opens the database, creates it and writes at the
same moment), runs FLOWS parent flows concurrently, and prints the ids of every run it made as JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import flow_engine
from flow_engine import BaseFlow, BaseStep


class Bump(BaseStep):
    step_name = "bump"

    async def run(self, inputs: Any) -> int:
        await asyncio.sleep(0.001)
        return int(inputs["n"]) + 1


class Child(BaseFlow):
    flow_name = "mp_child"
    total_steps = 2

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        n = inputs["n"]
        for _ in range(2):
            n = (await Bump().execute({"n": n})).output_content
        return {"n": n, "run_id": str(flow_engine.current_run_id())}


class Parent(BaseFlow):
    flow_name = "mp_parent"
    total_steps = 3

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        n = inputs["n"]
        for _ in range(3):
            n = (await Bump().execute({"n": n})).output_content
        child = await Child().execute({"n": n})
        return {"n": child["n"], "child": child["run_id"]}


async def run_all(count: int) -> list[str]:
    flows = [Parent() for _ in range(count)]
    results = await asyncio.gather(*(flow.execute({"n": i}) for i, flow in enumerate(flows)))
    ids = []
    for i, (flow, result) in enumerate(zip(flows, results, strict=True)):
        assert result["n"] == i + 5, result
        ids += [str(flow.run_id), result["child"]]
    return ids


def main() -> int:
    url, count, ready, go = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
    ready.touch()
    deadline = time.monotonic() + 60
    while not go.exists():
        if time.monotonic() > deadline:
            print("never told to start", file=sys.stderr)
            return 3
        time.sleep(0.002)
    flow_engine.configure(database_url=url, heartbeat_interval=0.02)  # heartbeats: more writers at once
    ids = asyncio.run(run_all(count))
    flow_engine.configure(database_url="memory://")  # closes the SQL store: flushes and stops its writer
    print(json.dumps(ids))
    return 0


if __name__ == "__main__":
    sys.exit(main())
