"""Submits many runs from its own process, as a web application would: ``python -m
tests.plugins.celery.submit_many COUNT TOPIC_PREFIX [STEPS]``. Settings come from the environment
(FLOW_ENGINE_DATABASE_URL, FLOW_ENGINE_BROKER_URL, ...). Prints the run ids as a JSON list."""

from __future__ import annotations

import asyncio
import json
import sys

from tests.plugins.celery.worker_flows import Questions


async def submit_all(count: int, prefix: str, steps: int) -> list[str]:
    submits = [Questions().submit({"topic": f"{prefix}-{i}", "count": steps}) for i in range(count)]
    ids = await asyncio.gather(*submits)
    return [str(run_id) for run_id in ids]


def main() -> int:
    count, prefix = int(sys.argv[1]), sys.argv[2]
    steps = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    print(json.dumps(asyncio.run(submit_all(count, prefix, steps))))
    from flow_engine.engine import reset_engine

    reset_engine()  # closes the store: its writer has nothing left to write
    return 0


if __name__ == "__main__":
    sys.exit(main())
