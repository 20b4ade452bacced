"""Fixtures of the viewer's tests: a store holding ``history.py``'s runs, on SQLite and PostgreSQL,
and Starlette's test client on the app serving it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip(
    "starlette", reason="the viewer's tests need the 'ui' extra: pip install 'flow-engine[ui]'"
)

from flow_engine.engine import configure, reset_engine
from tests.plugins.sql.databases import BACKENDS, empty_database

from .history import History, write_history


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(backend: str, tmp_path: Path) -> Iterator[str]:
    with empty_database(backend, tmp_path) as url:
        if backend == "postgresql":
            from flow_engine.plugins.sql import migrate

            migrate.upgrade(url)
        yield url
        reset_engine()  # close the store before its schema is dropped


@pytest.fixture
def history(db_url: str, tmp_path: Path) -> History:
    engine = configure(database_url=db_url, data_dir=tmp_path / "data")
    return write_history(engine.store)


def make_client(**options: Any) -> Any:
    from starlette.testclient import TestClient

    from flow_engine.plugins.ui.app import create_app

    return TestClient(create_app(**options), base_url="http://127.0.0.1:8765")


@pytest.fixture
def client(history: History) -> Iterator[Any]:
    with make_client() as test_client:
        yield test_client
