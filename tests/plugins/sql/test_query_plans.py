"""The history's queries are index lookups, never a scan of a big table: checked with EXPLAIN.

A store is filled with a few thousand runs (``benchmarks/fill_history.py``, the rows the 1M-run
benchmark uses), each store call is made with the SQL it sends captured, and each captured SELECT is
explained: on SQLite ``EXPLAIN QUERY PLAN`` must not ``SCAN`` flow_runs, flow_step_runs or
llm_requests (an ordered index walk, ``SCAN ... USING INDEX``, is allowed only for the unfiltered
newest-first listing, which stops after LIMIT rows); on PostgreSQL, with ``enable_seqscan=off`` (a
sequential scan is then chosen only where no index can serve), no ``Seq Scan``. Listings newest first
with a LIMIT must come in index order: no sort of every matching row (SQLite ``TEMP B-TREE``,
PostgreSQL ``Sort``); a run's own steps and requests (a handful) may be sorted.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from benchmarks.fill_history import COMMON_FLOW, fill_runs
from flow_engine.plugins.sql.durable import stale_runs_query
from flow_engine.plugins.sql.models import FlowRunModel, flow_runs
from flow_engine.plugins.sql.repo import FlowRunRepo
from flow_engine.plugins.sql.retention import roots_query
from flow_engine.plugins.sql.store import SqlStore
from flow_engine.storage import PRUNABLE_STATUSES, utcnow

from .databases import BACKENDS, empty_database

RUNS = 3_000
BIG_TABLES = ("flow_runs", "flow_step_runs", "llm_requests")


@pytest.fixture(scope="module", params=BACKENDS)
def history(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqlStore]:
    with empty_database(request.param, tmp_path_factory.mktemp("plans")) as url:
        fill_runs(url, RUNS, seed=7)
        store = SqlStore(url)
        try:
            yield store
        finally:
            store.close()


Captured = list[tuple[str, Any]]


def captured(store: SqlStore, call: Callable[[], Any]) -> Captured:
    """The SELECT statements (with their parameters) that ``call()`` sends through the store's engine."""
    statements: Captured = []

    def listen(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", listen)
    try:
        call()
    finally:
        event.remove(store.engine, "before_cursor_execute", listen)
    assert statements, "the call sent no query"
    return statements


def plan(store: SqlStore, statement: str, parameters: Any) -> str:
    with store.engine.connect() as conn:
        if store.engine.dialect.name == "sqlite":
            rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
            return "\n".join(str(row[-1]) for row in rows)
        conn.exec_driver_sql("SET enable_seqscan = off")
        rows = conn.exec_driver_sql(f"EXPLAIN {statement}", parameters).all()
        conn.rollback()
        return "\n".join(str(row[0]) for row in rows)


def assert_indexed(store: SqlStore, statements: Captured, *, ordered_walk: bool = False) -> list[str]:
    plans = [plan(store, sql, params) for sql, params in statements]
    for (sql, _), text in zip(statements, plans, strict=True):
        if store.engine.dialect.name == "sqlite":
            for line in text.splitlines():
                scan = re.match(r"SCAN (\w+)", line.strip())
                if scan and scan.group(1) in BIG_TABLES:
                    walk = re.search(r"USING (COVERING )?INDEX ix_\w+_created_at", line)
                    assert ordered_walk and walk, f"full scan:\n{text}\n-- for --\n{sql}"
            if "ORDER BY" in sql and "LIMIT" in sql:
                assert "TEMP B-TREE" not in text, f"sorts every match:\n{text}\n-- for --\n{sql}"
        else:
            assert "Seq Scan" not in text, f"sequential scan:\n{text}\n-- for --\n{sql}"
            if "ORDER BY" in sql and "LIMIT" in sql:
                assert not re.search(r"\bSort\b", text), f"sorts every match:\n{text}\n-- for --\n{sql}"
    return plans


@pytest.fixture(scope="module")
def sample(history: SqlStore) -> dict[str, Any]:
    """A run with steps, a child run and its parent, and a user, from the filled store."""
    with Session(history.engine) as session:
        child = session.execute(
            select(FlowRunModel).where(FlowRunModel.parent_run_id.is_not(None)).limit(1)
        ).scalar_one()
        user = session.execute(
            select(FlowRunModel.user_id).where(FlowRunModel.user_id.is_not(None)).limit(1)
        ).scalar_one()
        return {"run_id": child.parent_run_id, "child_id": child.id, "user_id": user}


@pytest.mark.slow
def test_a_run_by_its_full_id_is_a_primary_key_lookup(history, sample):
    statements = captured(history, lambda: history.get_run(sample["run_id"]))
    plans = assert_indexed(history, statements)
    assert history.get_run(sample["run_id"]) is not None
    if history.engine.dialect.name == "sqlite":
        assert "SEARCH flow_runs USING INDEX sqlite_autoindex_flow_runs_1 (id=?)" in plans[0]
    else:
        assert "Index Scan using pk_flow_runs" in plans[0]


def test_a_prefix_is_a_range_of_the_primary_key(history, sample):
    prefix = sample["run_id"].hex[:8]
    statements = captured(history, lambda: history.run_ids_with_prefix(prefix))
    plans = assert_indexed(history, statements)
    assert history.run_ids_with_prefix(prefix) == [sample["run_id"]]
    assert history.resolve_run_id(prefix) == sample["run_id"]
    if history.engine.dialect.name == "sqlite":
        assert "(id>? AND id<?)" in plans[0]
    else:
        assert "pk_flow_runs" in plans[0] and "::text" not in plans[0] and "~~" not in plans[0]


@pytest.mark.parametrize("prefix", ["0", "ab", "ffffffff", "0123456789abcdef0123456789abcdef"])
def test_prefix_ranges_find_exactly_the_ids_that_start_so(history, prefix):
    found = history.run_ids_with_prefix(prefix, limit=10_000)
    assert all(run_id.hex.startswith(prefix) for run_id in found)
    assert found == sorted(found, key=lambda run_id: run_id.hex)
    with Session(history.engine) as session:
        every = [run_id.hex for run_id in session.execute(select(FlowRunModel.id)).scalars()]
    assert len(found) == sum(1 for run_id in every if run_id.startswith(prefix))


@pytest.mark.parametrize("bad", ["", "xyz", "0" * 33])
def test_a_prefix_that_cannot_match_asks_nothing(history, bad):
    assert history.run_ids_with_prefix(bad) == []


@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"flow_name": COMMON_FLOW},
        {"status": "failed"},
        {"status": "completed"},
        {"status": "running"},
        {"user_id": "user"},
        {"parent_run_id": "run"},
        {"flow_name": COMMON_FLOW, "status": "completed"},
    ],
    ids=lambda f: "+".join(f) or "all",
)
def test_listings_newest_first_read_an_index_in_order(history, sample, filters):
    values = {
        k: (sample["user_id"] if v == "user" else sample["run_id"] if v == "run" else v)
        for k, v in filters.items()
    }
    statements = captured(history, lambda: history.list_runs(**values, limit=20))
    assert_indexed(history, statements, ordered_walk=not values)
    runs = history.list_runs(**values, limit=20)
    assert runs and all(getattr(r, k) == v for r in runs for k, v in values.items())
    keys = [(r.created_at, r.id.hex) for r in runs]
    assert keys == sorted(keys, reverse=True)


def test_a_runs_steps_and_llm_requests_by_index(history, sample):
    run_id = sample["run_id"]
    assert_indexed(history, captured(history, lambda: history.list_steps(run_id)))
    assert_indexed(history, captured(history, lambda: history.list_llm_requests(flow_run_id=run_id)))
    steps = history.list_steps(run_id)
    assert [s.step_order for s in steps] == sorted(s.step_order for s in steps) and steps
    step_id = steps[0].id
    assert_indexed(history, captured(history, lambda: history.list_llm_requests(step_run_id=step_id)))
    assert [r.step_run_id for r in history.list_llm_requests(step_run_id=step_id)] == [step_id]


def test_stale_run_detection_is_indexed(history):
    """The query ``mark_crashed`` (flow recover, workers) runs, and the repository's stale scan that
    also finds runs pending too long."""
    now = utcnow()
    heartbeat_before, pending_before = now - timedelta(minutes=10), now - timedelta(days=1)

    def by_repo() -> list[FlowRunModel]:
        with Session(history.engine) as session:
            return FlowRunRepo(session).stale(heartbeat_before, pending_before)

    plans = assert_indexed(history, captured(history, by_repo))
    index = "ix_flow_runs_status_last_heartbeat"
    assert index in plans[0]
    found = by_repo()
    assert {r.status for r in found} == {"running", "pending"}
    assert all(
        r.last_heartbeat is None or r.last_heartbeat < heartbeat_before
        for r in found
        if r.status == "running"
    )

    def by_writer_query() -> None:
        with history.engine.connect() as conn:
            conn.execute(stale_runs_query(), {"stale_before": heartbeat_before}).all()

    assert index in assert_indexed(history, captured(history, by_writer_query))[0]


def test_child_runs_by_index(history, sample):
    children = history.list_runs(parent_run_id=sample["run_id"])
    assert [c.id for c in children] == [sample["child_id"]]
    statements = captured(history, lambda: history.list_runs(parent_run_id=sample["run_id"]))
    plans = assert_indexed(history, statements)
    assert "parent_run_id" in plans[0]


def test_a_missing_run_is_no_scan_either(history):
    assert history.get_run(uuid.uuid4()) is None
    assert_indexed(history, captured(history, lambda: history.get_run(uuid.uuid4())))
    assert_indexed(history, captured(history, lambda: history.run_ids_with_prefix("0000000")))


def test_the_tables_are_big_enough_for_the_plans_to_mean_something(history):
    with history.engine.connect() as conn:
        assert len(conn.execute(select(flow_runs.c.id)).all()) == RUNS


@pytest.mark.parametrize("flow_name", [None, COMMON_FLOW])
def test_prune_walks_the_created_at_index(history, flow_name):
    """Each batch of ``flow runs prune`` reads the oldest runs in (created_at, id) order from where the
    last batch stopped: an index range, not a scan or a sort of every old run."""
    sqlite = history.engine.dialect.name == "sqlite"
    cutoff = utcnow() - timedelta(days=90)
    with Session(history.engine) as session:  # where a first batch of 200 would have stopped
        position = session.execute(
            select(FlowRunModel.created_at, FlowRunModel.id)
            .order_by(FlowRunModel.created_at)
            .offset(200)
            .limit(1)
        ).one()
    for after in (None, (position[0], position[1])):
        query = roots_query(
            cutoff, list(PRUNABLE_STATUSES), flow_name, after, 200, sqlite=sqlite, lock=not sqlite
        )

        def run(query: Any = query) -> None:
            with history.engine.connect() as conn:
                conn.execute(query).all()

        plans = assert_indexed(history, captured(history, run))
        assert "created_at" in plans[0]
        assert "TEMP B-TREE" not in plans[0] and not re.search(r"\bSort\b", plans[0])
