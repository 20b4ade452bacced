"""The writer applies a batch with one statement per table and shape (multi-row INSERT, UPDATE ... FROM
VALUES on SQLite; executemany on PostgreSQL) and answers the batch's cancel-flag lookups with one query.
The results must be exactly those of applying the operations one by one, failures included."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections import Counter
from typing import Any

from flow_engine.plugin import LLMRequestRecord, RunRecord, StepRecord
from flow_engine.plugins.sql import writer as writer_module
from flow_engine.plugins.sql.writer import Operation, StorageError
from flow_engine.storage import utcnow


def run_record(**fields: Any) -> RunRecord:
    return RunRecord(flow_name=fields.pop("flow_name", "f"), status=fields.pop("status", "running"), **fields)


async def in_one_batch(store: Any, *writes: Any) -> list[Any]:
    """Run ``writes`` (coroutines of store writes) so that the writer takes them as ONE batch: a first
    operation holds the writer thread until all of them are queued."""
    release = threading.Event()

    def hold(cursor: Any, dml: Any) -> None:
        release.wait(10)

    holder = asyncio.ensure_future(store._writer.submit(Operation("hold", [("call", hold)])))
    await asyncio.sleep(0.05)  # the writer is inside `hold` now
    tasks = [asyncio.ensure_future(w) for w in writes]
    await asyncio.sleep(0)  # every task has queued its operation
    release.set()
    await holder
    return list(await asyncio.gather(*tasks, return_exceptions=True))


def spy_grouped(monkeypatch: Any) -> list[int]:
    sizes: list[int] = []
    original = writer_module.Writer._perform_grouped

    def spy(cursor: Any, dml: Any, operations: list[Any], **pipeline: Any) -> list[Any]:
        sizes.append(len(operations))
        return original(cursor, dml, operations, **pipeline)

    monkeypatch.setattr(writer_module.Writer, "_perform_grouped", staticmethod(spy))
    return sizes


async def test_a_batch_is_applied_grouped_with_the_same_results(store, monkeypatch):
    sizes = spy_grouped(monkeypatch)
    parent, other = run_record(), run_record()
    child = run_record(parent_run_id=parent.id)
    grandchild = run_record(parent_run_id=child.id)
    for record in (parent, other, child, grandchild):
        await store.create_run(record)
    assert await store.request_cancel(parent.id) == "running"
    steps = {
        run.id: StepRecord(flow_run_id=run.id, step_name="s", step_key="s", step_type="python", step_order=1)
        for run in (other, grandchild)
    }
    new_runs = [run_record() for _ in range(30)]
    new_steps = [
        StepRecord(flow_run_id=r.id, step_name="s", step_key="s", step_type="python", step_order=1)
        for r in new_runs
    ]
    requests = [
        LLMRequestRecord(flow_run_id=r.id, step_run_id=s.id, model="m", response={"text": "é"})
        for r, s in zip(new_runs, new_steps, strict=True)
    ]
    for step in steps.values():
        await store.start_step(step, {"current_step": "s"})
    await store.heartbeat(other.id, utcnow())  # a write waited for: the deferred starts are in too
    sizes.clear()
    results = await in_one_batch(
        store,
        *(store.create_run(r) for r in new_runs),
        *(store.record_llm_request(q) for q in requests),
        store.finish_step(steps[other.id].id, {"status": "completed"}, other.id, {"step_progress": 1}),
        store.finish_step(
            steps[grandchild.id].id, {"status": "completed"}, grandchild.id, {"step_progress": 1}
        ),
        store.heartbeat(other.id, utcnow()),
        store.heartbeat(child.id, utcnow()),
        store.update_run(other.id, {"current_step": "first"}),
        store.update_run(other.id, {"current_step": "second"}),  # same row twice: order kept
    )
    assert sizes and sizes[0] > 60  # taken together
    assert results[:60] == [None] * 60
    assert results[60:] == [False, True, False, True, None, None]  # cancel of an ancestor is seen
    assert store.get_run(other.id).current_step == "second"
    assert store.get_run(other.id).step_progress == 1
    assert [s.status for s in store.list_steps(grandchild.id)] == ["completed"]
    stored = store.list_llm_requests(flow_run_id=new_runs[7].id)
    assert [q.id for q in stored] == [requests[7].id] and stored[0].response == {"text": "é"}

    # steps whose runs were created in the same batch (inserts go parents first); a step's deferred
    # start goes to the writer with its finish
    async def start_and_finish(step: StepRecord) -> bool | None:
        await store.start_step(step, {"current_step": "s"})
        changes = {"step_progress": 1}
        return await store.finish_step(step.id, {"status": "completed"}, step.flow_run_id, changes)

    sizes.clear()
    results = await in_one_batch(store, *(start_and_finish(s) for s in new_steps))
    assert results == [False] * 30 and sizes == [60]
    assert all(store.get_run(r.id).current_step == "s" for r in new_runs)
    assert all(store.get_run(r.id).step_progress == 1 for r in new_runs)
    assert all([s.status for s in store.list_steps(r.id)] == ["completed"] for r in new_runs)


async def test_a_failing_operation_in_a_grouped_batch_fails_alone(store, monkeypatch):
    sizes = spy_grouped(monkeypatch)
    runs = [run_record() for _ in range(10)]
    for record in runs:
        await store.create_run(record)
    missing = uuid.uuid4()
    duplicate = run_record(id=runs[0].id)
    fresh = [run_record() for _ in range(5)]
    results = await in_one_batch(
        store,
        *(store.update_run(r.id, {"current_step": "x"}) for r in runs[:5]),
        store.update_run(missing, {"current_step": "x"}),
        store.create_run(duplicate),
        *(store.create_run(r) for r in fresh),
        *(store.update_run(r.id, {"current_step": "x"}) for r in runs[5:]),
    )
    assert sizes  # the grouped attempt was made, failed, and the batch went one by one
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 2 and all(isinstance(e, StorageError) for e in errors)
    assert f"no run with id {missing}" in str(results[5])
    assert f"could not store run {runs[0].id}" in str(results[6])
    assert all(store.get_run(r.id).current_step == "x" for r in runs)
    assert all(store.get_run(r.id) is not None for r in fresh)


async def test_many_rows_are_split_into_statements_within_the_parameter_limit(store, backend, monkeypatch):
    await store.create_run(run_record())  # the writer's connection is open (and its limit learnt)
    dml = store._writer._dml
    dml.max_params = 999  # SQLite's historical minimum: 999 // 25 columns = 39 rows at most
    statements: list[int] = []
    original = dml.insert_rows

    def counting(table: Any, rows: Any) -> Any:
        statements.append(len(rows))
        return original(table, rows)

    monkeypatch.setattr(dml, "insert_rows", counting)
    records = [run_record() for _ in range(120)]
    results = await in_one_batch(store, *(store.create_run(r) for r in records))
    assert results == [None] * 120
    assert len(store.list_runs(limit=1000)) == 121
    if backend == "sqlite":  # powers of two: a few statement texts, for sqlite3's statement cache
        assert statements == [32, 32, 32, 16, 8]
    else:  # one array per column: any number of rows in one statement
        assert statements == [120]


async def test_a_too_long_value_is_refused_not_truncated(store, backend):
    records = [run_record() for _ in range(5)]
    for record in records:
        await store.create_run(record)
    long_key = "k" * 300  # flow_runs.current_step is VARCHAR(200)
    results = await in_one_batch(
        store,
        *(store.update_run(r.id, {"current_step": "ok"}) for r in records[:4]),
        store.update_run(records[4].id, {"current_step": long_key}),
    )
    assert results[:4] == [None] * 4
    if backend == "postgresql":  # SQLite does not enforce lengths
        assert isinstance(results[4], StorageError)
        assert store.get_run(records[4].id).current_step is None
    else:
        assert store.get_run(records[4].id).current_step == long_key
    assert all(store.get_run(r.id).current_step == "ok" for r in records[:4])


async def test_callers_of_a_big_batch_are_woken_a_few_per_loop_iteration(store, monkeypatch):
    from tests.core.test_pacing import IterationCounter

    monkeypatch.setattr(writer_module, "RESOLVE_PER_TURN", 16)
    records = [run_record() for _ in range(200)]
    iterations = IterationCounter()
    woken: list[int] = []

    async def create(record: RunRecord) -> None:
        await store.create_run(record)
        woken.append(iterations.count)

    results = await in_one_batch(store, *(create(r) for r in records))
    iterations.stop()
    assert results == [None] * 200 and len(store.list_runs(limit=500)) == 200
    per_iteration = Counter(woken)
    assert max(per_iteration.values()) <= 16 and len(per_iteration) >= 200 // 16
