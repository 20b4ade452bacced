"""The Alembic migrations shipped in the package: one head, no drift from the models, a clean round trip,
offline SQL and autogenerate working with the config built in code - on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from flow_engine.plugins.sql import migrate, schema
from flow_engine.plugins.sql.connect import create_sql_engine
from flow_engine.plugins.sql.models import Base
from tests.plugins.sql.databases import BACKENDS, empty_database

TABLES = {"flow_runs", "flow_step_runs", "llm_requests"}


@pytest.fixture(params=BACKENDS)
def empty_url(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    with empty_database(request.param, tmp_path) as url:
        yield url


def tables(url: str) -> set[str]:
    engine = create_sql_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def drift(url: str) -> list[object]:
    engine = create_sql_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def test_one_head_and_the_code_knows_it():
    heads = migrate.script_directory().get_heads()
    assert heads == [schema.HEAD] == [migrate.head()]


def test_migrations_ship_inside_the_package():
    folder = migrate.migrations_dir()
    for name in ("env.py", "script.py.mako", "versions/0001_initial.py"):
        assert (folder / name).is_file(), name


def test_upgrade_creates_what_the_models_describe(empty_url):
    assert migrate.current(empty_url) is None
    assert migrate.upgrade(empty_url) == schema.HEAD
    assert tables(empty_url) >= TABLES | {"alembic_version"}
    assert drift(empty_url) == []  # autogenerate finds nothing to do


def test_downgrade_and_upgrade_round_trip(empty_url):
    migrate.upgrade(empty_url)
    assert migrate.downgrade(empty_url, "base") is None
    assert tables(empty_url) & TABLES == set()
    assert migrate.current(empty_url) is None
    assert migrate.upgrade(empty_url, schema.HEAD) == schema.HEAD
    assert drift(empty_url) == []
    assert migrate.upgrade(empty_url) == schema.HEAD  # again: nothing to do


def test_bad_revisions_are_usage_errors(empty_url):
    from flow_engine.errors import UsageError

    with pytest.raises(UsageError, match="Can't locate revision"):
        migrate.upgrade(empty_url, "no_such_revision")
    with pytest.raises(UsageError):
        migrate.downgrade(empty_url, "no_such_revision")


@pytest.mark.parametrize("url", ["sqlite:///offline.db", "postgresql+psycopg://u@h/db"])
def test_offline_sql_script(url):
    buffer = io.StringIO()
    config = migrate.alembic_config()
    config.output_buffer = buffer
    config.set_main_option("sqlalchemy.url", url)
    command.upgrade(config, "head", sql=True)
    sql = buffer.getvalue()
    for table in TABLES:
        assert f"CREATE TABLE {table}" in sql
    assert ("UUID" in sql) == url.startswith("postgresql")


def test_autogenerate_against_a_database_at_head_writes_an_empty_revision(tmp_path):
    url = f"sqlite:///{tmp_path / 'head.db'}"
    migrate.upgrade(url)
    versions = tmp_path / "versions"
    versions.mkdir()
    engine = create_sql_engine(url)
    try:
        with engine.connect() as conn:
            config = migrate.alembic_config(conn)
            config.set_main_option("path_separator", "os")
            config.set_main_option(
                "version_locations",
                os.pathsep.join([str(migrate.migrations_dir() / "versions"), str(versions)]),
            )
            script = command.revision(
                config,
                message="nothing",
                autogenerate=True,
                rev_id="9999_nothing",
                version_path=str(versions),
            )
    finally:
        engine.dispose()
    source = Path(script.path).read_text()  # type: ignore[union-attr]
    assert f"down_revision: str | Sequence[str] | None = '{schema.HEAD}'" in source
    assert Path(script.path).name == "9999_nothing.py"  # type: ignore[union-attr]
    upgrade = source.split("def upgrade() -> None:", 1)[1].split("def downgrade", 1)[0]
    assert "pass" in upgrade and "op." not in source  # the models and the migrations agree
