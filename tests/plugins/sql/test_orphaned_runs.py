"""``RunStore.list_orphaned_runs``: the read behind workers' recovery scans (plugins/celery/recovery.py),
on SQLite, PostgreSQL and the memory store."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from sqlalchemy import event, text

from flow_engine.plugin import RunRecord, RunStore
from flow_engine.plugins.memory import MemoryStore
from flow_engine.storage import utcnow

NOW = utcnow()
STALE_BEFORE = NOW - timedelta(seconds=60)
PENDING_BEFORE = NOW - timedelta(seconds=120)


def run(
    status: str, *, executor: str = "celery", beat_ago: float | None = None, age: float = 0, **fields: Any
):  # type: ignore[no-untyped-def]
    values: dict[str, Any] = {
        "flow_name": "f",
        "status": status,
        "execution_mode": "background",
        "created_at": NOW - timedelta(seconds=age),
        "flow_metadata": {"flow_ref": "m:F", "background": {"executor": executor}},
    }
    if beat_ago is not None:
        values["last_heartbeat"] = NOW - timedelta(seconds=beat_ago)
    return RunRecord(**(values | fields))


def fill(store: RunStore) -> dict[str, RunRecord]:
    runs = {
        "dead_long_ago": run("running", beat_ago=3600, age=4000),
        "dead_recently": run("running", beat_ago=90, age=200),
        "alive": run("running", beat_ago=5, age=200),
        "lost": run("pending", age=300),
        "lost_earlier": run("pending", age=900),
        "queued": run("pending", age=30),
        "other_executor": run("running", executor="local", beat_ago=3600, age=4000),
        "in_process": run("running", beat_ago=3600, age=4000, execution_mode="sync"),
        "ended": run("completed", beat_ago=3600, age=4000),
        "crashed": run("crashed", beat_ago=3600, age=4000),
    }
    parent = runs["ended"]
    runs["child"] = run("running", beat_ago=3600, age=4000, parent_run_id=parent.id)

    async def create() -> None:
        for record in runs.values():
            await store.create_run(record)

    asyncio.run(create())
    return runs


def check(store: RunStore) -> None:
    runs = fill(store)
    names = {r.id: name for name, r in runs.items()}
    found = store.list_orphaned_runs("celery", STALE_BEFORE, PENDING_BEFORE)
    # most recently dead first, then pending oldest first
    assert [names[r.id] for r in found] == ["dead_recently", "dead_long_ago", "lost_earlier", "lost"]
    assert found[0].last_heartbeat == runs["dead_recently"].last_heartbeat  # whole records
    without_pending = store.list_orphaned_runs("celery", STALE_BEFORE)
    assert [names[r.id] for r in without_pending] == ["dead_recently", "dead_long_ago"]
    limited = store.list_orphaned_runs("celery", STALE_BEFORE, PENDING_BEFORE, limit=1)
    assert [names[r.id] for r in limited] == ["dead_recently", "lost_earlier"]
    assert [names[r.id] for r in store.list_orphaned_runs("local", STALE_BEFORE)] == ["other_executor"]


def test_the_sql_store(store):  # type: ignore[no-untyped-def]
    check(store)


def test_the_memory_store():
    check(MemoryStore())


def test_the_stale_runs_are_read_through_the_status_heartbeat_index_when_it_exists(tmp_path):
    """A note for the history indexes (issue 19): with an index on (status, last_heartbeat) - added
    there by a migration, here by hand - SQLite reads the stale runs as a range of it."""
    from flow_engine.plugins.sql.store import SqlStore

    store = SqlStore(f"sqlite:///{tmp_path / 'plans.db'}")
    try:
        with store.engine.begin() as conn:
            conn.execute(text("CREATE INDEX ix_test_status_heartbeat ON flow_runs (status, last_heartbeat)"))
        statements: list[tuple[str, Any]] = []

        def capture(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
            statements.append((statement, parameters))

        event.listen(store.engine, "before_cursor_execute", capture)
        store.list_orphaned_runs("celery", STALE_BEFORE)
        event.remove(store.engine, "before_cursor_execute", capture)
        [(statement, parameters)] = [s for s in statements if "last_heartbeat <" in s[0]]
        with store.engine.connect() as conn:
            plan = " ".join(
                str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
            )
        assert "ix_test_status_heartbeat (status=? AND last_heartbeat<?)" in plan, plan
        assert "TEMP B-TREE" not in plan, plan  # read in index order: no sort
    finally:
        store.close()
