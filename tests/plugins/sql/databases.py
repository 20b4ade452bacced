"""Test databases for the SQL backend: a SQLite file, or a scratch schema on the PostgreSQL server.

PostgreSQL runs only when ``FLOW_ENGINE_TEST_POSTGRES_URL`` is set (``.ci/run`` sets it, and tox passes
``FLOW_ENGINE_TEST_*`` through); each test gets a schema of its own (``search_path`` in the URL) that
is dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

PG_ENV = "FLOW_ENGINE_TEST_POSTGRES_URL"
PG_HINT = (
    f"PostgreSQL tests need {PG_ENV}, e.g. "
    f"{PG_ENV}=postgresql+psycopg://postgres@127.0.0.1:5432/test (.ci/run sets it)"
)
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def pg_base_url() -> str:
    """The server URL; without one the test is skipped, or fails where services are required (CI)."""
    url = os.environ.get(PG_ENV)
    if not url:
        if os.environ.get("FLOW_ENGINE_TEST_REQUIRE_SERVICES"):
            pytest.fail(f"FLOW_ENGINE_TEST_REQUIRE_SERVICES is set but {PG_ENV} is not")
        pytest.skip(PG_HINT)
    return url


def _conninfo(url: str) -> str:
    from flow_engine.plugins.sql.connect import parse_url

    return parse_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def pg_schema() -> Iterator[str]:
    """A URL whose connections live in a fresh, empty schema; the schema is dropped afterwards."""
    import psycopg

    base = pg_base_url()
    schema = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(_conninfo(base), autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        sep = "&" if "?" in base else "?"
        try:
            yield f"{base}{sep}options=-csearch_path%3D{schema}"
        finally:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


@contextmanager
def empty_database(backend: str, tmp_path: Path) -> Iterator[str]:
    """The URL of a database with no tables yet."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
    else:
        with pg_schema() as url:
            yield url
