"""``memory://`` prunes by the same rules as the SQL store: old finished root runs with their trees."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from flow_engine.errors import UsageError
from flow_engine.plugin import LLMRequestRecord, RunRecord, StepRecord
from flow_engine.plugins.memory import MemoryStore
from flow_engine.storage import utcnow

OLD = utcnow() - timedelta(days=100)


def test_memory_store_prunes_trees_of_finished_runs():
    store = MemoryStore()

    async def fill() -> dict[str, RunRecord]:
        runs = {
            "old": RunRecord(flow_name="f", status="completed", created_at=OLD),
            "old_failed": RunRecord(flow_name="g", status="failed", created_at=OLD),
            "live": RunRecord(flow_name="f", status="completed", created_at=OLD),
            "recent": RunRecord(flow_name="f", status="completed"),
        }
        runs["child"] = RunRecord(flow_name="c", status="completed", parent_run_id=runs["old"].id)
        runs["live_child"] = RunRecord(flow_name="c", status="running", parent_run_id=runs["live"].id)
        for run in runs.values():
            await store.create_run(run)
            step = StepRecord(flow_run_id=run.id, step_name="s", step_key="s", step_type="t", step_order=1)
            await store.start_step(step, {})
            await store.record_llm_request(
                LLMRequestRecord(flow_run_id=run.id, step_run_id=step.id, model="m")
            )
        return runs

    runs = asyncio.run(fill())
    cutoff = utcnow() - timedelta(days=30)
    dry = store.prune_runs(cutoff, dry_run=True)
    assert (dry.runs, dry.child_runs, dry.steps, dry.llm_requests) == (2, 1, 3, 3)
    assert len(store.list_runs(limit=100)) == 6

    batches: list[list[object]] = []
    assert store.prune_runs(cutoff, flow_name="g", on_batch=batches.append).runs == 1
    assert batches == [[runs["old_failed"].id]]
    result = store.prune_runs(cutoff)
    assert (result.runs, result.child_runs, result.steps, result.llm_requests) == (1, 1, 2, 2)
    left = {r.id for r in store.list_runs(limit=100)}
    assert left == {runs["live"].id, runs["live_child"].id, runs["recent"].id}
    assert (
        store.list_steps(runs["old"].id) == [] and store.list_llm_requests(flow_run_id=runs["child"].id) == []
    )
    with pytest.raises(UsageError):
        store.prune_runs(cutoff, statuses=["pending"])
