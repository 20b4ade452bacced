"""``self.map``: one keyed step or child run per item, a hard concurrency cap (measured by the fake
server's gauge), results in input order, a failure policy, and a resume that repeats no completed item."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel

from flow_engine import BaseFlow, BaseStep, UnstructuredStep, resume_run
from flow_engine.engine import get_engine
from flow_engine.errors import BudgetExceeded, UsageError
from tests.fake_openai_server import Fault, Reply, use_fake_openai


@pytest.fixture
def online(fake_openai, tmp_path):
    use_fake_openai(fake_openai.base_url, tmp_path)
    return fake_openai


class Summarize(UnstructuredStep):
    step_name = "summarize_item"
    model = "openai/gpt-4o-mini"

    class Inputs(BaseModel):
        prompt: str


class SummarizeAll(BaseFlow):
    flow_name = "summarize_all"
    concurrency: ClassVar[int] = 3
    on_error: ClassVar[str] = "stop"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        items = [{"prompt": f"item {i}"} for i in range(inputs["count"])]
        results = await self.map(Summarize, items, concurrency=self.concurrency, on_error=self.on_error)  # type: ignore[arg-type]
        return {
            "texts": [r.output_content if not isinstance(r, Exception) else f"failed: {r}" for r in results]
        }


async def test_the_cap_holds_and_results_come_in_input_order(online):
    online.latency_ms = 50  # every answer takes a while, so items overlap
    flow = SummarizeAll()
    outputs = await flow.execute({"count": 12})
    assert len(online.chat_requests) == 12
    assert online.max_in_flight == 3  # never more than the cap, and the cap is used
    assert outputs["texts"] == [f"fake answer to: item {i}" for i in range(12)]
    steps = get_engine().store.list_steps(flow.run_id)
    assert [s.step_key for s in steps] == ["summarize_item"] + [f"summarize_item#{n}" for n in range(2, 13)]
    assert [s.inputs["prompt"] for s in steps] == [f"item {i}" for i in range(12)]  # keys in input order


async def test_a_cap_of_one_runs_the_items_one_after_another(online):
    online.latency_ms = 20

    class OneByOne(SummarizeAll):
        flow_name = "one_by_one"
        concurrency = 1

    await OneByOne().execute({"count": 4})
    assert online.max_in_flight == 1


async def test_stop_raises_the_first_failure_and_cancels_the_rest(online):
    get_engine().settings.max_retries = 0
    online.script(Fault.status(400))
    flow = SummarizeAll()
    with pytest.raises(Exception, match="400"):
        await flow.execute({"count": 6})
    run = get_engine().store.get_run(flow.run_id)
    assert run.status == "failed"
    statuses = [s.status for s in get_engine().store.list_steps(flow.run_id)]
    assert "failed" in statuses
    assert "running" not in statuses  # items cut short were recorded, not left running


async def test_collect_goes_on_and_leaves_each_failure_in_its_place(online):
    get_engine().settings.max_retries = 0

    class Collect(SummarizeAll):
        flow_name = "collect_failures"
        concurrency = 1  # one at a time, so the scripted fault meets the second item
        on_error = "collect"

    online.script(Reply("first"), Fault.status(400), Reply("third"))
    flow = Collect()
    outputs = await flow.execute({"count": 3})
    first, second, third = outputs["texts"]
    assert (first, third) == ("first", "third")
    assert second.startswith("failed:") and "400" in second
    assert get_engine().store.get_run(flow.run_id).status == "completed"


class Slow(BaseStep):
    step_name = "slow_item"
    gate: ClassVar[asyncio.Event | None] = None
    ran: ClassVar[list[int]] = []

    class Inputs(BaseModel):
        n: int

    async def run(self, inputs: Inputs) -> int:
        Slow.ran.append(inputs.n)
        if inputs.n >= 5 and Slow.gate is not None:
            await Slow.gate.wait()  # items from 5 on hang until the test lets them go
        return inputs.n * 10


class SlowAll(BaseFlow):
    flow_name = "slow_all"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        results = await self.map(Slow, [{"n": n} for n in range(8)], concurrency=4)
        return {"values": [r.output_content for r in results]}


async def test_a_resumed_run_replays_completed_items_and_runs_only_the_rest():
    Slow.gate, Slow.ran = asyncio.Event(), []
    flow = SlowAll()
    task = asyncio.create_task(flow.execute({}))
    for _ in range(200):
        await asyncio.sleep(0.01)
        steps = get_engine().store.list_steps(flow.run_id) if flow.run_id else []
        if sum(s.status == "completed" for s in steps) >= 5:
            break
    task.cancel()  # as Ctrl-C: the items still running are cancelled, the run too
    with pytest.raises(asyncio.CancelledError):
        await task
    done_before = sorted(
        int(s.step_key.partition("#")[2] or 1) - 1
        for s in get_engine().store.list_steps(flow.run_id)
        if s.status == "completed"
    )
    assert done_before == [0, 1, 2, 3, 4]
    Slow.gate.set()
    Slow.ran = []
    outputs = await resume_run(flow.run_id)
    assert outputs["values"] == [n * 10 for n in range(8)]
    assert sorted(Slow.ran) == [5, 6, 7]  # no completed item ran again


async def test_child_flows_are_mapped_as_child_runs(online):
    class One(BaseFlow):
        flow_name = "one_item"

        async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
            result = await Summarize().execute({"prompt": inputs["prompt"]})
            return {"text": result.output_content}

    class Parent(BaseFlow):
        flow_name = "many_children"

        async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
            results = await self.map(One, [{"prompt": "a"}, {"prompt": "b"}, {"prompt": "c"}], concurrency=2)
            return {"texts": [r["text"] for r in results]}

    parent = Parent()
    outputs = await parent.execute({})
    assert outputs["texts"] == ["fake answer to: a", "fake answer to: b", "fake answer to: c"]
    children = get_engine().store.list_runs(parent_run_id=parent.run_id)
    assert sorted(c.run_key for c in children) == ["one_item", "one_item#2", "one_item#3"]
    by_key = {c.run_key: c.inputs["prompt"] for c in children}
    assert by_key == {"one_item": "a", "one_item#2": "b", "one_item#3": "c"}


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
async def test_a_bad_concurrency_is_a_usage_error(bad):
    class Bad(BaseFlow):
        flow_name = "bad_concurrency"

        async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
            await self.map(Slow, [{"n": 1}], concurrency=bad)
            return {}

    with pytest.raises(UsageError, match="concurrency"):
        await Bad().execute({})


async def test_a_spent_budget_stops_the_map_even_when_collecting(online):
    class Budgeted(SummarizeAll):
        flow_name = "budgeted_map"
        concurrency = 1
        on_error = "collect"
        max_tokens = 30

    online.script(*(Reply(f"r{i}", usage=(10, 10)) for i in range(6)))
    flow = Budgeted()
    with pytest.raises(BudgetExceeded):
        await flow.execute({"count": 6})
    assert len(online.chat_requests) == 2  # 20 tokens, then 40 >= 30: the third item never started
