"""The SQL store's write path: group commit, errors reaching the caller, no blocked event loop,
close() flushing, and the durable-execution writes (heartbeat, cancel, crash marking, resume)."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import text

from flow_engine import BaseFlow, BaseStep
from flow_engine.errors import NotFoundError, UsageError
from flow_engine.plugin import RunRecord, RunStatus, StepRecord
from flow_engine.plugins.sql import writer as writer_module
from flow_engine.plugins.sql.store import SqlStore
from flow_engine.plugins.sql.writer import StorageError
from flow_engine.storage import utcnow


class Tick(BaseStep):
    step_name = "tick"

    async def run(self, inputs: Any) -> int:
        await asyncio.sleep(0)
        return int(inputs["n"]) + 1


class ThreeTicks(BaseFlow):
    flow_name = "three_ticks"
    total_steps = 3

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        n = inputs["n"]
        for _ in range(3):
            n = (await Tick().execute({"n": n})).output_content
        return {"n": n}


def run_record(**fields: Any) -> RunRecord:
    return RunRecord(flow_name=fields.pop("flow_name", "f"), status=fields.pop("status", "running"), **fields)


async def test_many_concurrent_flows_share_commits_and_lose_nothing(store, monkeypatch):
    transactions = 0
    original = writer_module.Writer._transaction

    def counting(self: Any, operations: list[Any], *args: Any) -> list[Any]:
        nonlocal transactions
        transactions += 1
        return original(self, operations, *args)

    monkeypatch.setattr(writer_module.Writer, "_transaction", counting)
    flows = [ThreeTicks() for _ in range(200)]
    results = await asyncio.gather(*(f.execute({"n": i}) for i, f in enumerate(flows)))
    assert results == [{"n": i + 3} for i in range(200)]
    runs = store.list_runs(flow_name="three_ticks", limit=1000)
    assert len(runs) == 200 and {r.status for r in runs} == {"completed"}
    assert {r.step_progress for r in runs} == {3} and {r.progress_percentage for r in runs} == {100.0}
    for flow in flows[:20]:
        assert [s.step_key for s in store.list_steps(flow.run_id)] == ["tick", "tick#2", "tick#3"]
    writes = 200 * (2 + 3 * 2)  # per flow: create + end, and start + finish of each step
    assert transactions < writes / 2  # writes waiting together were committed together


async def test_a_failing_write_fails_only_its_caller(store):
    good = [run_record() for _ in range(30)]
    duplicate = run_record(id=good[0].id)
    outcomes = await asyncio.gather(
        *(store.create_run(r) for r in good[:15]),
        store.create_run(duplicate),
        *(store.create_run(r) for r in good[15:]),
        return_exceptions=True,
    )
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(errors) == 1 and isinstance(errors[0], StorageError)
    assert f"could not store run {good[0].id}" in str(errors[0])
    assert len(store.list_runs(limit=100)) == 30


async def test_updating_a_missing_row_is_an_error(store):
    missing = uuid.uuid4()
    with pytest.raises(StorageError, match=f"no run with id {missing}"):
        await store.update_run(missing, {"status": "failed"})
    with pytest.raises(StorageError, match="no step with id"):
        await store.finish_step(uuid.uuid4(), {"status": "completed"}, missing, {})


async def test_a_step_key_is_unique_within_its_run(store):
    run = run_record()
    await store.create_run(run)
    step = StepRecord(flow_run_id=run.id, step_name="s", step_key="s", step_type="python", step_order=1)
    await store.start_step(step, {"current_step": "s"})
    await store.finish_step(step.id, {"status": "completed"}, run.id, {})
    again = StepRecord(flow_run_id=run.id, step_name="s", step_key="s", step_type="python", step_order=2)
    # a running step's start is written without waiting; its failure is raised by its finish
    await store.start_step(again, {"current_step": "s"})
    with pytest.raises(StorageError, match=r"step 's' of run .*(UNIQUE|unique|duplicate)"):
        await store.finish_step(again.id, {"status": "completed"}, run.id, {})
    assert [s.id for s in store.list_steps(run.id)] == [step.id]


async def test_unknown_fields_are_refused_before_writing(store):
    run = run_record()
    await store.create_run(run)
    with pytest.raises(KeyError, match="nonsense"):
        await store.update_run(run.id, {"nonsense": 1})


async def test_values_round_trip_exactly(store):
    local = timezone(timedelta(hours=2))
    created = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=local)
    run = run_record(
        created_at=created,
        started_at=datetime(2024, 5, 6, 5, 8, 9, 123456),  # naive: taken as UTC
        user_id=uuid.uuid4(),
        inputs={"text": "zürich ✓", "nested": {"list": [1, 2.5, None, True]}},
        outputs=None,
        flow_metadata={"k": [1, {"v": "w"}]},
        total_cost=0.000123,
    )
    await store.create_run(run)
    await store.update_run(run.id, {"status": RunStatus.FAILED, "progress_percentage": 33.3})
    stored = store.get_run(run.id)
    assert stored.created_at == created and stored.created_at.tzinfo == UTC
    assert stored.started_at == datetime(2024, 5, 6, 5, 8, 9, 123456, tzinfo=UTC)
    assert stored.status == "failed" and type(stored.status) is str
    expected = run.model_copy(
        update={
            "status": "failed",
            "progress_percentage": 33.3,
            "created_at": stored.created_at,
            "started_at": stored.started_at,
        }
    )
    assert stored == expected
    with store.engine.connect() as conn:  # None is SQL NULL, not the JSON text "null"
        assert conn.execute(text("SELECT count(*) FROM flow_runs WHERE outputs IS NULL")).scalar() == 1


async def test_run_ids_resolve_from_unique_prefixes(store):
    ids = [
        uuid.UUID("abcd0000-0000-4000-8000-000000000001"),
        uuid.UUID("abce0000-0000-4000-8000-000000000002"),
    ]
    for run_id in ids:
        await store.create_run(run_record(id=run_id))
    assert store.resolve_run_id("abcd") == ids[0]
    assert store.resolve_run_id("ABCE0000-0") == ids[1]  # dashes and case do not matter
    assert store.resolve_run_id(str(ids[0])) == ids[0]
    with pytest.raises(UsageError, match="ambiguous"):
        store.resolve_run_id("abc")
    with pytest.raises(NotFoundError, match="no run with id starting 'ffff'"):
        store.resolve_run_id("ffff")
    assert store.run_ids_with_prefix("%") == [] and store.run_ids_with_prefix("zz") == []


async def test_list_runs_filters_newest_first_with_limit_and_offset(store):
    user = uuid.uuid4()
    start = datetime(2024, 1, 1, tzinfo=UTC)
    records = [
        run_record(
            flow_name="a" if i % 2 else "b",
            status="completed" if i % 3 else "failed",
            user_id=user if i < 4 else None,
            created_at=start + timedelta(minutes=i),
        )
        for i in range(8)
    ]
    for record in records:
        await store.create_run(record)
    newest_first = [r.id for r in reversed(records)]
    assert [r.id for r in store.list_runs()] == newest_first
    assert [r.id for r in store.list_runs(limit=3, offset=2)] == newest_first[2:5]
    assert [r.id for r in store.list_runs(flow_name="a")] == [
        r.id for r in reversed(records) if r.flow_name == "a"
    ]
    assert [r.id for r in store.list_runs(status="failed")] == [
        r.id for r in reversed(records) if r.status == "failed"
    ]
    assert [r.id for r in store.list_runs(user_id=user)] == [r.id for r in reversed(records[:4])]
    both = store.list_runs(flow_name="b", status="failed", user_id=user)
    assert [r.id for r in both] == [records[0].id]


async def test_the_event_loop_keeps_running_while_the_database_is_busy(store, backend):
    run = run_record()
    await store.create_run(run)
    blocker = store.engine.raw_connection()  # another writer holds a lock for a while:
    if backend == "sqlite":
        blocker.cursor().execute("BEGIN IMMEDIATE")  # SQLite's write lock
    else:
        blocker.cursor().execute("SELECT 1 FROM flow_runs WHERE id = %s FOR UPDATE", (run.id,))  # the row
    gaps: list[float] = []

    async def ticker() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticking = asyncio.create_task(ticker())
    write = asyncio.create_task(store.update_run(run.id, {"current_step": "waiting"}))
    await asyncio.sleep(0.5)
    assert not write.done()  # waiting for the lock (busy timeout), off the event loop
    blocker.commit()
    blocker.close()
    await asyncio.wait_for(write, 10)
    ticking.cancel()
    assert store.get_run(run.id).current_step == "waiting"
    # the 0.5 s wait for the lock never held the loop (a loaded 2-core CI machine may pause it briefly)
    assert len(gaps) > 30 and max(gaps) < 0.25


async def test_close_writes_what_is_queued_then_refuses(store, db_url):
    records = [run_record() for _ in range(100)]
    tasks = [asyncio.create_task(store.create_run(r)) for r in records]
    await asyncio.sleep(0)  # every task has queued its write
    store.close()  # flushes the queue before the writer stops
    await asyncio.gather(*tasks)
    with pytest.raises(StorageError, match="closed"):
        await store.create_run(run_record())
    reopened = SqlStore(db_url)
    try:
        assert len(reopened.list_runs(limit=1000)) == 100
    finally:
        reopened.close()


async def test_heartbeat_and_cancel_request(store):
    running, pending, done = run_record(), run_record(status="pending"), run_record(status="completed")
    for record in (running, pending, done):
        await store.create_run(record)
    later = utcnow() + timedelta(seconds=5)
    assert await store.heartbeat(running.id, later) is False
    assert store.get_run(running.id).last_heartbeat == later
    assert await store.request_cancel(pending.id) == "cancelled"
    assert store.get_run(pending.id).status == "cancelled" and store.get_run(pending.id).completed_at
    assert await store.request_cancel(done.id) == "completed"
    assert await store.request_cancel(running.id) == "running"
    assert await store.heartbeat(running.id, utcnow()) is True  # the runner sees it at its next beat...
    step = StepRecord(flow_run_id=running.id, step_name="s", step_key="s", step_type="python", step_order=1)
    await store.start_step(step, {})
    assert await store.finish_step(step.id, {"status": "completed"}, running.id, {}) is True  # ...or step end
    with pytest.raises(NotFoundError):
        await store.request_cancel(uuid.uuid4())


async def test_mark_crashed_marks_only_stale_running_runs(store):
    old = utcnow() - timedelta(minutes=10)
    stale, silent, fresh = run_record(last_heartbeat=old), run_record(), run_record(last_heartbeat=utcnow())
    finished = run_record(status="failed", last_heartbeat=old)
    for record in (stale, silent, fresh, finished):
        await store.create_run(record)
    cutoff = utcnow() - timedelta(minutes=1)
    assert await store.mark_crashed(cutoff, fresh.id) == []
    assert sorted(await store.mark_crashed(cutoff)) == sorted([stale.id, silent.id])
    crashed = store.get_run(stale.id)
    assert crashed.status == "crashed" and "no heartbeat since 2" in crashed.error_message
    assert store.get_run(fresh.id).status == "running" and store.get_run(finished.id).status == "failed"
    assert await store.mark_crashed(cutoff) == []


async def test_prepare_resume_drops_unfinished_steps_and_the_cancel_request(store):
    run = run_record()
    await store.create_run(run)
    for order, status in enumerate(["completed", "failed", "running"], start=1):
        step = StepRecord(
            flow_run_id=run.id, step_name="s", step_key=f"s#{order}", step_type="python", step_order=order
        )
        await store.start_step(step, {})
        await store.finish_step(step.id, {"status": status}, run.id, {})
    await store.request_cancel(run.id)
    await store.prepare_resume(run.id, {"status": "running", "error_message": None})
    assert [(s.step_key, s.status) for s in store.list_steps(run.id)] == [("s#1", "completed")]
    assert await store.heartbeat(run.id, utcnow()) is False


@pytest.mark.postgres
async def test_a_lost_server_connection_is_replaced_without_losing_the_write(tmp_path):
    import psycopg

    from flow_engine.plugins.sql import migrate

    from .databases import _conninfo, pg_base_url, pg_schema

    with pg_schema() as url:
        migrate.upgrade(url)
        store = SqlStore(url)
        try:
            run = run_record()
            await store.create_run(run)
            backend_pid = store._writer._conn.driver_connection.info.backend_pid  # the writer's session
            with psycopg.connect(_conninfo(pg_base_url()), autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (backend_pid,))
            await store.update_run(run.id, {"current_step": "after the restart"})
            assert store.get_run(run.id).current_step == "after the restart"
        finally:
            store.close()
