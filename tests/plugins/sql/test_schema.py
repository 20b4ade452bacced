"""Opening a store checks the schema: SQLite is created or upgraded on the spot, a server database that
is behind is refused naming `flow db upgrade`, an unknown revision is refused, and the usual start-up
(database at head) never imports Alembic."""

from __future__ import annotations

import subprocess
import sys

import pytest
from sqlalchemy import text

from flow_engine.errors import ConfigurationError
from flow_engine.plugin import RunRecord
from flow_engine.plugins.sql import migrate, schema
from flow_engine.plugins.sql.connect import create_sql_engine
from flow_engine.plugins.sql.store import SqlStore

from .databases import empty_database


def test_head_constant_is_alembics_head():
    assert schema.HEAD == migrate.head()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_an_unknown_revision_is_refused(backend, tmp_path):
    with empty_database(backend, tmp_path) as url:
        migrate.upgrade(url)
        engine = create_sql_engine(url)
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
        engine.dispose()
        with pytest.raises(
            ConfigurationError, match="'9999_from_the_future', which this version of flow-engine"
        ):
            SqlStore(url)


async def test_sqlite_is_created_and_upgraded_automatically(tmp_path):
    url = f"sqlite:///{tmp_path / 'sub' / 'auto.db'}"
    store = SqlStore(url)  # a new file, in a folder that did not exist
    store.close()
    assert migrate.current(url) == schema.HEAD
    migrate.downgrade(url, "base")
    assert migrate.current(url) is None
    store = SqlStore(url)  # behind: upgraded on open
    try:
        assert migrate.current(url) == schema.HEAD
        run = RunRecord(flow_name="f")
        await store.create_run(run)
        assert store.get_run(run.id) == run
    finally:
        store.close()


@pytest.mark.postgres
def test_a_server_database_is_never_migrated_implicitly(tmp_path, monkeypatch):
    with empty_database("postgresql", tmp_path) as url:
        with pytest.raises(
            ConfigurationError, match="has no flow-engine tables yet; create them with `flow db upgrade`"
        ):
            SqlStore(url)
        assert migrate.current(url) is None  # nothing was created
        migrate.upgrade(url)
        SqlStore(url).close()
        # pretend this code is one revision ahead of the database
        monkeypatch.setattr(schema, "HEAD", "0002_next")
        monkeypatch.setattr(migrate, "is_known", lambda revision: True)
        with pytest.raises(
            ConfigurationError, match="behind this flow-engine's '0002_next'; run `flow db upgrade`"
        ):
            SqlStore(url)


def _python(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.mark.slow
def test_opening_an_up_to_date_database_does_not_import_alembic(tmp_path):
    url = f"sqlite:///{tmp_path / 'cheap.db'}"
    code = (
        "import sys\n"
        "from flow_engine.plugins.sql.store import SqlStore\n"
        f"SqlStore({url!r}).close()\n"
        "print('alembic' in sys.modules)"
    )
    assert _python(code) == "True"  # a new database: created with Alembic
    assert _python(code) == "False"  # at head: one query, no Alembic
