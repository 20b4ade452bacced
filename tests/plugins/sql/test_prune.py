"""Retention (``prune_runs``) on SQLite and PostgreSQL: what goes and what stays, per table; dry runs;
never a live run; flows writing during a prune lose nothing; the space comes back on SQLite."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from flow_engine import BaseFlow, BaseStep
from flow_engine.errors import UsageError
from flow_engine.plugin import LLMRequestRecord, RunRecord, StepRecord
from flow_engine.plugins.sql.connect import sqlite_path
from flow_engine.plugins.sql.models import flow_runs, flow_step_runs, llm_requests
from flow_engine.plugins.sql.store import SqlStore
from flow_engine.storage import PruneResult, utcnow

NOW = utcnow()
OLD = NOW - timedelta(days=200)
CUTOFF = NOW - timedelta(days=90)
TABLES = {"flow_runs": flow_runs, "flow_step_runs": flow_step_runs, "llm_requests": llm_requests}


def counts(store: SqlStore) -> dict[str, int]:
    with store.engine.connect() as conn:
        return {
            name: conn.execute(select(func.count()).select_from(t)).scalar_one() for name, t in TABLES.items()
        }


async def add_run(
    store: SqlStore,
    *,
    status: str = "completed",
    created_at: Any = OLD,
    flow_name: str = "f",
    parent: uuid.UUID | None = None,
    steps: int = 2,
) -> uuid.UUID:
    """A run with ``steps`` steps, each with one LLM request, written the way the engine writes them."""
    run = RunRecord(
        flow_name=flow_name,
        status=status,
        created_at=created_at,
        parent_run_id=parent,
        run_key=f"{flow_name}#{uuid.uuid4().hex[:6]}" if parent else None,
    )
    await store.create_run(run)
    for order in range(1, steps + 1):
        step = StepRecord(
            flow_run_id=run.id, step_name="s", step_key=f"s#{order}", step_type="python", step_order=order
        )
        await store.start_step(step, {})
        request = LLMRequestRecord(
            flow_run_id=run.id, step_run_id=step.id, model="offline/x", created_at=created_at
        )
        await store.record_llm_request(request)
        await store.finish_step(step.id, {"status": "completed", "llm_request_id": request.id}, run.id, {})
    return run.id


async def test_old_finished_runs_go_with_their_steps_requests_and_children(store):
    old_done = [await add_run(store, status=s) for s in ("completed", "failed", "cancelled", "crashed")]
    child = await add_run(store, parent=old_done[0], created_at=NOW)  # new, but goes with its root
    grandchild = await add_run(store, parent=child, created_at=NOW, steps=1)
    recent = await add_run(store, created_at=NOW - timedelta(days=10))
    before = counts(store)
    assert before == {"flow_runs": 7, "flow_step_runs": 13, "llm_requests": 13}

    batches: list[list[uuid.UUID]] = []
    result = store.prune_runs(CUTOFF, batch_size=3, on_batch=batches.append)

    assert (result.runs, result.child_runs, result.steps, result.llm_requests) == (4, 2, 11, 11)
    assert counts(store) == {"flow_runs": 1, "flow_step_runs": 2, "llm_requests": 2}
    assert store.get_run(recent) is not None and len(store.list_steps(recent)) == 2
    for gone in [*old_done, child, grandchild]:
        assert store.get_run(gone) is None
        assert store.list_steps(gone) == [] and store.list_llm_requests(flow_run_id=gone) == []
    assert len(batches) == 2  # 4 roots in batches of 3
    assert sorted(i.hex for b in batches for i in b) == sorted(i.hex for i in [*old_done, child, grandchild])


async def test_never_a_running_or_pending_run_nor_the_tree_that_holds_one(store):
    running = await add_run(store, status="running")
    pending = await add_run(store, status="pending", steps=0)
    root = await add_run(store, status="completed")
    live_child = await add_run(store, status="running", parent=root, created_at=OLD)
    before = counts(store)

    result = store.prune_runs(CUTOFF)

    assert result == PruneResult(bytes_freed=result.bytes_freed, space_note=result.space_note)  # nothing
    assert counts(store) == before
    for kept in (running, pending, root, live_child):
        assert store.get_run(kept) is not None
    with pytest.raises(UsageError, match="never pruned"):
        store.prune_runs(CUTOFF, statuses=["running"])


async def test_status_and_flow_filters(store):
    failed = await add_run(store, status="failed", flow_name="a")
    done_a = await add_run(store, status="completed", flow_name="a")
    done_b = await add_run(store, status="completed", flow_name="b")

    assert store.prune_runs(CUTOFF, statuses=["failed"]).runs == 1
    assert store.get_run(failed) is None and store.get_run(done_a) is not None
    assert store.prune_runs(CUTOFF, flow_name="b").runs == 1
    assert store.get_run(done_b) is None and store.get_run(done_a) is not None


async def test_a_dry_run_counts_the_same_and_changes_nothing(store):
    for status in ("completed", "failed"):
        root = await add_run(store, status=status)
        await add_run(store, parent=root)
    await add_run(store, created_at=NOW)
    before = counts(store)
    seen: list[uuid.UUID] = []

    dry = store.prune_runs(CUTOFF, dry_run=True, batch_size=1, on_batch=seen.extend)

    assert counts(store) == before
    assert (dry.runs, dry.child_runs, dry.steps, dry.llm_requests) == (2, 2, 8, 8)
    assert len(seen) == 4
    real = store.prune_runs(CUTOFF)
    assert (real.runs, real.child_runs, real.steps, real.llm_requests) == (2, 2, 8, 8)


class Tick(BaseStep):
    step_name = "tick"

    async def run(self, inputs: Any) -> int:
        await asyncio.sleep(0.001)
        return int(inputs["n"]) + 1


class Ticks(BaseFlow):
    flow_name = "ticks"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        n = 0
        for _ in range(int(inputs["steps"])):
            n = (await Tick().execute({"n": n})).output_content
        return {"n": n}


async def test_flows_writing_during_a_prune_lose_nothing(store):
    for _ in range(120):
        await add_run(store)
    done = threading.Event()
    outcome: dict[str, Any] = {}

    def prune() -> None:
        try:
            outcome["result"] = store.prune_runs(CUTOFF, batch_size=5)
        finally:
            done.set()

    pruner = threading.Thread(target=prune)
    pruner.start()
    results = []
    while not done.is_set() or len(results) < 10:  # flows run before, during and after the prune
        results += await asyncio.gather(*(Ticks().execute({"steps": 5}) for _ in range(4)))
    pruner.join()

    assert outcome["result"].runs == 120
    assert results == [{"n": 5}] * len(results)
    runs = store.list_runs(flow_name="ticks", limit=10_000)
    assert len(runs) == len(results) and {r.status for r in runs} == {"completed"}
    assert all(len(store.list_steps(r.id)) == 5 for r in runs)
    assert counts(store)["flow_runs"] == len(results)


async def test_sqlite_gives_the_space_back(store):
    if store.engine.dialect.name != "sqlite":
        result = store.prune_runs(CUTOFF)
        assert result.bytes_freed is None and "VACUUM" in result.space_note
        return
    path = sqlite_path(store.engine.url)
    assert path is not None
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # INCREMENTAL, set at creation
    for _ in range(60):
        await add_run(store, steps=4)
    pages = sqlite3.connect(path).execute("PRAGMA page_count").fetchone()[0]

    result = store.prune_runs(CUTOFF)

    after = sqlite3.connect(path).execute("PRAGMA page_count").fetchone()[0]
    assert result.runs == 60 and result.bytes_freed and result.bytes_freed > 0
    page_size = sqlite3.connect(path).execute("PRAGMA page_size").fetchone()[0]
    assert (pages - after) * page_size == result.bytes_freed
    assert sqlite3.connect(path).execute("PRAGMA freelist_count").fetchone()[0] == 0


def test_a_sqlite_file_without_incremental_vacuum_is_told_to_vacuum(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE keep_me (x)")  # an existing file: auto_vacuum can no longer change
    store = SqlStore(f"sqlite:///{path}")
    try:

        async def fill() -> None:
            for _ in range(5):
                await add_run(store)

        asyncio.run(fill())
        result = store.prune_runs(CUTOFF)
    finally:
        store.close()
    assert result.runs == 5 and result.bytes_freed is None
    assert "VACUUM" in result.space_note
