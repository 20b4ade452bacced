"""Two resumes of one batch at the same time (``run_batch`` with the same id, as two ``flow batch
--resume`` would): each item runs once, in one of them; the other reports it as run elsewhere."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel

from flow_engine import BaseFlow, BaseStep
from flow_engine.batch import BatchItem, new_batch_id, run_batch
from flow_engine.engine import get_engine
from flow_engine.plugin import RunFilter, RunRecord


class Seen:
    ran: ClassVar[list[int]] = []
    fail: ClassVar[set[int]] = set()


class Slow(BaseStep):
    step_name = "slow"

    class Inputs(BaseModel):
        n: int

    async def run(self, inputs: Inputs) -> int:
        await asyncio.sleep(0.01)
        Seen.ran.append(inputs.n)
        if inputs.n in Seen.fail:
            raise ValueError(f"item {inputs.n} fails")
        return inputs.n


class SlowFlow(BaseFlow):
    flow_name = "slow_flow"

    class Inputs(BaseModel):
        n: int

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"n": (await Slow().execute({"n": inputs["n"]})).output_content}


@pytest.fixture(autouse=True)
def fresh():
    Seen.ran, Seen.fail = [], set()


def items(count: int) -> list[BatchItem]:
    return [BatchItem(line=n + 1, inputs={"n": n}) for n in range(count)]


def runs_of(batch_id: str) -> list[RunRecord]:
    return get_engine().store.find_runs(RunFilter(batch_id=batch_id), limit=1000)


async def test_two_resumes_at_once_run_each_item_once(engine):
    batch_id = new_batch_id()
    Seen.fail = {1, 2}
    first = await run_batch(SlowFlow, items(4), batch_id=batch_id, concurrency=4)
    assert [r.status for r in first] == ["completed", "failed", "failed", "completed"]
    Seen.fail, Seen.ran = set(), []
    # the same batch with four more items (lines 5-8 never got a run), resumed twice at once
    a, b = await asyncio.gather(
        run_batch(SlowFlow, items(8), batch_id=batch_id, concurrency=3),
        run_batch(SlowFlow, items(8), batch_id=batch_id, concurrency=3),
    )
    assert sorted(Seen.ran) == [1, 2, 4, 5, 6, 7]  # the failed two and the four new, each once
    runs = runs_of(batch_id)
    assert len(runs) == 8 and {r.status for r in runs} == {"completed"}
    assert sorted(r.batch_line for r in runs if r.batch_line is not None) == [1, 2, 3, 4, 5, 6, 7, 8]
    for line in (2, 3, 5, 6, 7, 8):  # both name the one run of the item; the one that did not run it
        ours, theirs = a[line - 1], b[line - 1]  # says so (or, had it started late, found it completed)
        assert ours.run_id == theirs.run_id and not (ours.elsewhere and theirs.elsewhere), (ours, theirs)
        assert [r.error for r in (ours, theirs) if r.elsewhere] != [None]
    assert sum(r.elsewhere for r in (*a, *b)) >= 1
    for r in (*a, *b):  # in a batch's words, not `flow resume`'s ("cancel it first")
        assert not r.elsewhere or ("another process" in r.error and "cancel it" not in r.error), r.error
    assert not [r for r in (*a, *b) if r.status == "failed"]


async def test_a_batch_item_refused_for_another_reason_is_a_failure(engine, monkeypatch):
    """Only a refusal because another process has the line is "elsewhere"."""
    from flow_engine.errors import StorageError

    store = get_engine().store

    async def refuse(run: RunRecord) -> None:
        raise StorageError(f"could not store run {run.id}: disk full")

    monkeypatch.setattr(store, "create_run", refuse)
    [result] = await run_batch(SlowFlow, items(1), batch_id=new_batch_id())
    assert result.status == "failed" and not result.elsewhere and "disk full" in (result.error or "")
    assert Seen.ran == []
