"""The SQL plugin as the engine sees it: registered by entry point, picked by URL scheme, cheap to import."""

from __future__ import annotations

import subprocess
import sys

import pytest

from flow_engine import configure
from flow_engine.errors import ConfigurationError
from flow_engine.plugins.sql.connect import display_url, parse_url, sqlite_path
from flow_engine.plugins.sql.store import SqlStore
from flow_engine.storage import pick_backend


def test_registered_for_sqlite_and_postgresql(engine):
    backends = engine.plugins.storage_backends()
    for url in (
        "sqlite:///x.db",
        "sqlite+pysqlite:///x.db",
        "postgresql+psycopg://u@h/db",
        "postgresql://h/db",
    ):
        assert pick_backend(url, backends).name == "sql"
    with pytest.raises(ConfigurationError, match=r"installed backends: .*sql \(sqlite/postgresql"):
        pick_backend("mysql://h/db", backends)


def test_the_default_database_is_a_sqlite_file_created_on_first_use(tmp_path):
    engine = configure(data_dir=tmp_path / "nested" / "data")
    assert engine.database_url == f"sqlite:///{tmp_path / 'nested' / 'data' / 'flow_engine.db'}"
    assert isinstance(engine.store, SqlStore)
    assert (tmp_path / "nested" / "data" / "flow_engine.db").is_file()
    assert engine.store.list_runs() == []


def test_importing_the_plugin_does_not_import_sqlalchemy():
    code = "import sys, flow_engine.plugins.sql; print('sqlalchemy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_urls():
    assert parse_url("postgresql://u:p@h/db").drivername == "postgresql+psycopg"
    assert parse_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    assert parse_url("postgresql+psycopg2://h/db").drivername == "postgresql+psycopg2"
    assert display_url("postgresql+psycopg://user:hunter2@h/db") == "postgresql+psycopg://user:***@h/db"
    assert sqlite_path("sqlite:///rel/x.db").as_posix() == "rel/x.db"
    assert sqlite_path("sqlite:////abs/x.db").as_posix() == "/abs/x.db"
    assert sqlite_path("sqlite://") is None and sqlite_path("sqlite:///:memory:") is None
    with pytest.raises(ConfigurationError, match="invalid database URL"):
        parse_url("sqlite:/no-slashes")


async def test_an_in_memory_sqlite_database_works_too():
    from flow_engine.plugin import RunRecord

    store = SqlStore("sqlite://")
    try:
        run = RunRecord(flow_name="f")
        await store.create_run(run)
        assert store.get_run(run.id) == run
    finally:
        store.close()


def test_an_unreachable_server_is_one_clear_error(refused_base_url):
    port = refused_base_url.split(":")[2].split("/")[0]
    with pytest.raises(ConfigurationError, match="cannot open database postgresql\\+psycopg://u:\\*\\*\\*@"):
        SqlStore(f"postgresql+psycopg://u:secretpw@127.0.0.1:{port}/db?connect_timeout=2")
