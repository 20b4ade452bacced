"""Fixtures of the SQL backend tests: every storage test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flow_engine.engine import Engine, configure, reset_engine

from .databases import BACKENDS, empty_database


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A database at the current schema revision (SQLite: created on first use; PostgreSQL: upgraded)."""
    with empty_database(backend, tmp_path) as url:
        if backend == "postgresql":
            from flow_engine.plugins.sql import migrate

            migrate.upgrade(url)
        yield url
        reset_engine()  # close the store before its schema is dropped


@pytest.fixture
def sql_engine(db_url: str, tmp_path: Path) -> Engine:
    """The engine, storing into ``db_url`` (with a key configured, to prove it is never stored)."""
    return configure(
        database_url=db_url,
        data_dir=tmp_path / "data",
        api_key="sk-test-secret-123456",
        retry_initial_delay=0.01,
        retry_max_delay=0.05,
    )


@pytest.fixture
def store(sql_engine: Engine):  # type: ignore[no-untyped-def]
    from flow_engine.plugins.sql.store import SqlStore

    opened = sql_engine.store
    assert isinstance(opened, SqlStore)
    return opened
