"""Migrations on a database with runs in it: down to the first revision and up again keeps every run,
step and LLM request (on SQLite, where Alembic's batch mode copies ``flow_runs``, foreign keys are off
while it does and checked before the migration commits); a migration that leaves a reference to a
missing row is rolled back; store connections keep enforcing foreign keys afterwards."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from flow_engine.errors import StorageError
from flow_engine.plugin import LLMRequestRecord, RunRecord, StepRecord
from flow_engine.plugins.sql import migrate, schema
from flow_engine.plugins.sql.connect import create_sql_engine, sqlite_path
from flow_engine.plugins.sql.models import flow_runs, flow_step_runs, llm_requests
from flow_engine.plugins.sql.store import SqlStore

FIRST = "0001_initial"


async def record_runs(url: str) -> dict[str, set[Any]]:
    """Two runs (one the child of the other), each with two steps and an LLM request per step; returns
    the ids per table."""
    store = SqlStore(url)
    try:
        parent = RunRecord(flow_name="f", status="completed")
        child = RunRecord(flow_name="f", status="completed", parent_run_id=parent.id, run_key="f#1")
        for run in (parent, child):
            await store.create_run(run)
            for order in (1, 2):
                step = StepRecord(
                    flow_run_id=run.id,
                    step_name="s",
                    step_key=f"s#{order}",
                    step_type="llm",
                    step_order=order,
                )
                await store.start_step(step, {})
                request = LLMRequestRecord(flow_run_id=run.id, step_run_id=step.id, model="offline/x")
                await store.record_llm_request(request)
                await store.finish_step(
                    step.id, {"status": "completed", "llm_request_id": request.id}, run.id, {}
                )
    finally:
        store.close()
    return stored_ids(url)


def stored_ids(url: str) -> dict[str, set[Any]]:
    engine = create_sql_engine(url)
    try:
        with engine.connect() as conn:
            return {
                "runs": set(conn.execute(select(flow_runs.c.id, flow_runs.c.parent_run_id)).all()),
                "steps": set(conn.execute(select(flow_step_runs.c.id, flow_step_runs.c.flow_run_id)).all()),
                "requests": set(conn.execute(select(llm_requests.c.id, llm_requests.c.flow_run_id)).all()),
            }
    finally:
        engine.dispose()


async def test_down_to_the_first_revision_and_up_again_keeps_the_runs(db_url):
    recorded = await record_runs(db_url)
    assert [len(recorded[t]) for t in ("runs", "steps", "requests")] == [2, 4, 4]

    assert migrate.downgrade(db_url, FIRST) == FIRST  # 0006..0002 drop columns: batch mode on SQLite
    assert stored_ids(db_url) == recorded
    assert migrate.upgrade(db_url) == schema.HEAD
    assert stored_ids(db_url) == recorded

    path = sqlite_path(db_url)
    if path is not None:
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
            references = " ".join(
                row[0] for row in conn.execute("SELECT sql FROM sqlite_master WHERE sql LIKE '%REFERENCES%'")
            )
        assert "_alembic_tmp" not in references  # the copies' names are gone from the references too


async def test_store_connections_enforce_foreign_keys_after_a_migration(tmp_path):
    store = SqlStore(f"sqlite:///{tmp_path / 'fk.db'}")  # a new file: migrated on the store's own engine
    try:
        assert store.engine.pool.checkedin() == 1  # the migration's connection, back in the pool
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
        run = RunRecord(flow_name="f")
        await store.create_run(run)
        step = StepRecord(flow_run_id=run.id, step_name="s", step_key="s", step_type="python", step_order=1)
        await store.start_step(step, {})
        await store.finish_step(step.id, {"status": "completed"}, run.id, {})
        with pytest.raises(IntegrityError, match="FOREIGN KEY"), store.engine.begin() as conn:
            conn.execute(flow_runs.delete())  # its step refers to it
        assert store.get_run(run.id) == run
    finally:
        store.close()


async def test_a_migration_leaving_a_missing_reference_is_rolled_back(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'orphans.db'}"
    recorded = await record_runs(url)
    real_downgrade = migrate.command.downgrade

    def downgrade_losing_a_run(config: Any, revision: str) -> None:
        real_downgrade(config, revision)
        connection = config.attributes["connection"]
        connection.execute(text("DELETE FROM flow_runs WHERE parent_run_id IS NULL"))  # steps refer to it

    monkeypatch.setattr(migrate.command, "downgrade", downgrade_losing_a_run)
    with pytest.raises(StorageError, match="rolled back: it left rows referring to rows that do not exist"):
        migrate.downgrade(url, FIRST)

    assert migrate.current(url) == schema.HEAD  # nothing of it was committed
    assert stored_ids(url) == recorded


async def test_an_upgrade_of_a_database_at_head_does_not_scan_its_references(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'big.db'}"
    await record_runs(url)
    scans: list[int] = []
    real_scan = migrate._broken_references
    monkeypatch.setattr(migrate, "_broken_references", lambda conn: scans.append(1) or real_scan(conn))
    assert migrate.upgrade(url) == schema.HEAD
    assert scans == []  # nothing to migrate: no scan of the whole database under the write lock
    migrate.downgrade(url, FIRST)
    assert len(scans) == 2  # a migration that runs is checked before and after


async def test_references_already_missing_before_a_migration_do_not_block_it(tmp_path):
    url = f"sqlite:///{tmp_path / 'old-orphans.db'}"
    recorded = await record_runs(url)
    path = sqlite_path(url)
    assert path is not None
    with sqlite3.connect(path) as conn:  # written with foreign keys off, as an old tool might have
        conn.execute("PRAGMA foreign_keys = OFF")
        conn.execute("DELETE FROM flow_runs WHERE parent_run_id IS NOT NULL")
    assert migrate.downgrade(url, FIRST) == FIRST
    assert migrate.upgrade(url) == schema.HEAD
    left = stored_ids(url)
    assert left["steps"] == recorded["steps"] and len(left["runs"]) == 1
