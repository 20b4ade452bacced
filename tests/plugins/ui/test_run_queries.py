"""``RunStore.find_runs`` / ``run_totals`` (added for the viewer): the memory backend (the contract's
default, Python filtering) and the SQL backend (one query) give the same answers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from flow_engine.engine import configure, reset_engine
from flow_engine.plugin import RunStore
from flow_engine.storage import RunFilter, RunTotals, utcnow
from tests.plugins.sql.databases import empty_database

from .history import DAY, USER_A, History, write_history


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def loaded(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[RunStore, History]]:
    if request.param == "memory":
        engine = configure(database_url="memory://")
        yield engine.store, write_history(engine.store)
        return
    with empty_database(request.param, tmp_path) as url:
        if request.param == "postgresql":
            from flow_engine.plugins.sql import migrate

            migrate.upgrade(url)
        engine = configure(database_url=url)
        yield engine.store, write_history(engine.store)
        reset_engine()


def names(history: History, runs: list) -> list[str]:  # type: ignore[type-arg]
    by_id = {v: k for k, v in history.ids.items()}
    return [by_id[r.id] for r in runs]


def test_filters_and_order(loaded: tuple[RunStore, History]) -> None:
    store, h = loaded
    stale_before = utcnow() - timedelta(minutes=5)
    assert names(h, store.find_runs(RunFilter(status="crashed", stale_before=stale_before))) == ["stale"]
    assert names(h, store.find_runs(RunFilter(status="running", stale_before=stale_before))) == ["live"]
    assert names(h, store.find_runs(RunFilter(status="running"))) == ["live", "stale"]  # as stored
    window = RunFilter(created_from=DAY, created_until=DAY + timedelta(days=2))
    assert names(h, store.find_runs(window)) == ["failed", "done"]  # from inclusive, until exclusive
    assert names(h, store.find_runs(RunFilter(user_id=USER_A))) == ["done"]
    assert names(h, store.find_runs(RunFilter(parent_run_id=h.ids["child"]))) == ["grandchild"]
    page = store.find_runs(RunFilter(flow_name="many_flow"), limit=2, offset=3)
    assert names(h, page) == ["many3", "many4"]


def test_totals(loaded: tuple[RunStore, History]) -> None:
    store, _ = loaded
    assert store.run_totals(RunFilter(flow_name="summarize_flow")) == RunTotals(
        runs=2, total_tokens=180, total_cost=pytest.approx(0.0133), unpriced_calls=0, execution_time_ms=6000
    )
    assert store.run_totals(RunFilter(flow_name="other_flow", status="completed")).unpriced_calls == 1
    assert store.run_totals(RunFilter(flow_name="no_such_flow")) == RunTotals()
    assert store.run_totals(RunFilter()).runs == 15
