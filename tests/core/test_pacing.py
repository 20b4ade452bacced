"""Flows started together take turns: at most STARTS_PER_TURN begin in one event-loop iteration."""

from __future__ import annotations

import asyncio
import collections
from typing import Any

from flow_engine import BaseFlow
from flow_engine.pacing import STARTS_PER_TURN


class IterationCounter:
    """Counts event-loop iterations: a callback that schedules itself again runs once per iteration."""

    def __init__(self) -> None:
        self.count = 0
        self._loop = asyncio.get_running_loop()
        self._handle = self._loop.call_soon(self._tick)

    def _tick(self) -> None:
        self.count += 1
        self._handle = self._loop.call_soon(self._tick)

    def stop(self) -> None:
        self._handle.cancel()


async def test_many_flows_started_at_once_begin_a_few_per_loop_iteration(isolated_engine, monkeypatch):
    store = isolated_engine.store
    iterations = IterationCounter()
    began: list[int] = []  # the iteration in which each flow's start-up reached its first write
    create_run = store.create_run

    async def spy(record: Any) -> None:
        began.append(iterations.count)
        await create_run(record)

    monkeypatch.setattr(store, "create_run", spy)

    class Quick(BaseFlow):
        flow_name = "quick"

        async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
            return {"ok": True}

    results = await asyncio.gather(*(Quick().execute({}) for _ in range(200)))
    iterations.stop()
    assert results == [{"ok": True}] * 200 and len(began) == 200  # every flow ran
    per_iteration = collections.Counter(began)
    assert max(per_iteration.values()) <= STARTS_PER_TURN
    assert len(per_iteration) >= 200 // STARTS_PER_TURN
    assert len(store.list_runs(flow_name="quick", limit=500)) == 200


async def test_a_flow_cancelled_while_waiting_for_its_turn_does_not_hold_up_the_others(isolated_engine):
    class Quick(BaseFlow):
        flow_name = "quick"

        async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
            return {"ok": True}

    tasks = [asyncio.ensure_future(Quick().execute({})) for _ in range(3 * STARTS_PER_TURN)]
    await asyncio.sleep(0)  # the first STARTS_PER_TURN have begun; the others wait
    for task in tasks[STARTS_PER_TURN : 2 * STARTS_PER_TURN]:
        task.cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    cancelled = [d for d in done if isinstance(d, asyncio.CancelledError)]
    assert len(cancelled) == STARTS_PER_TURN
    assert [d for d in done if not isinstance(d, BaseException)] == [{"ok": True}] * (2 * STARTS_PER_TURN)
