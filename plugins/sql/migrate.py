"""Running the Alembic migrations shipped in ``migrations/`` beside this module, config built in code.

No ``alembic.ini`` is needed: ``alembic_config()`` points Alembic at the package folder and hands
``env.py`` an open connection. Each upgrade or downgrade runs in one transaction that first takes a
lock (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: an advisory lock), so processes that start together on
a new database migrate it once, one after the other, instead of racing. On SQLite the migration's
connection has foreign keys off (Alembic's batch mode copies tables; see ``_foreign_keys``) and the
references are checked (``PRAGMA foreign_key_check``) before it commits.

Public functions: ``upgrade(url, rev="head")``, ``downgrade(url, rev)``, ``current(url)``, ``head()``.
For maintainers: ``revision(url, message)`` autogenerates the next revision against a database at head.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from flow_engine.plugin import ConfigurationError, StorageError, UsageError

from .connect import BEGIN_OPTION, create_sql_engine, display_url

_PG_LOCK_KEY = 0x466C6F77456E67  # "FlowEng": serializes migrations of one PostgreSQL database


def migrations_dir() -> Path:
    from . import migrations as package

    return Path(package.__file__).resolve().parent


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("file_template", "%%(rev)s")  # versions/0002_add_things.py: the id says it all
    if connection is not None:
        config.set_main_option(
            "sqlalchemy.url", connection.engine.url.render_as_string(hide_password=False).replace("%", "%%")
        )
        config.attributes["connection"] = connection
    return config


def script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    """The newest revision shipped with this flow-engine."""
    heads = script_directory().get_heads()
    if len(heads) != 1:  # pragma: no cover - a test keeps it at one
        raise ConfigurationError(f"the migrations have {len(heads)} heads ({', '.join(heads)}); expected one")
    return heads[0]


def is_known(revision: str) -> bool:
    try:
        return script_directory().get_revision(revision) is not None
    except CommandError:
        return False


@contextmanager
def _locked(engine: Engine) -> Iterator[Connection]:
    """A connection inside a transaction that holds the migration lock until it commits."""
    try:
        conn = engine.connect()
    except OperationalError as exc:
        raise ConfigurationError(
            f"cannot connect to database {display_url(engine.url)}: {exc.orig}"
        ) from None
    sqlite = engine.dialect.name == "sqlite"
    try:
        if sqlite:
            _incremental_vacuum_if_new(conn)
            _foreign_keys(conn, on=False)
            conn = conn.execution_options(**{BEGIN_OPTION: "IMMEDIATE"})
        with conn.begin():
            if engine.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
            yield conn
    finally:
        try:
            if sqlite and not conn.invalidated:
                _foreign_keys(conn, on=True)  # the connection goes back to the pool as connect.py made it
        finally:
            conn.close()


def _foreign_keys(conn: Connection, *, on: bool) -> None:
    """Switch SQLite's foreign key enforcement (a no-op inside a transaction, so: outside one).

    Migrations run with it off, as Alembic's batch mode needs on SQLite: ``batch_alter_table`` copies a
    table, drops the old one and renames the copy, and with foreign keys on, dropping ``flow_runs``
    deletes its rows one by one and fails on (or, with cascades, deletes) the steps and LLM requests
    that refer to them. ``_check_foreign_keys`` checks the result before the migration commits."""
    driver = conn.connection.driver_connection
    assert driver is not None
    driver.execute(f"PRAGMA foreign_keys = {'ON' if on else 'OFF'}")


def _broken_references(conn: Connection) -> list[Any]:
    """SQLite's ``PRAGMA foreign_key_check``: one row (table, rowid, parent table, key) per reference
    to a row that is not there."""
    return list(conn.exec_driver_sql("PRAGMA foreign_key_check").all())


def _check_foreign_keys(conn: Connection, broken_before: int) -> None:
    """Refuse (roll back) a SQLite migration that left more references to missing rows than there
    were before it (a database written with foreign keys off may hold some already: not its doing)."""
    broken = _broken_references(conn)
    if len(broken) > broken_before:
        shown = ", ".join(f"{row[0]} row {row[1]} -> {row[2]}" for row in broken[:5])
        more = f" and {len(broken) - 5} more" if len(broken) > 5 else ""
        raise StorageError(
            f"the migration was rolled back: it left rows referring to rows that do not exist ({shown}{more})"
        )


def _incremental_vacuum_if_new(conn: Connection) -> None:
    """A new SQLite database gets ``auto_vacuum=INCREMENTAL``, so that ``flow runs prune`` can hand the
    space of deleted runs back to the file system. It can only be chosen before the first table
    exists (then ``VACUUM`` of the empty file applies it at once); older databases need one ``VACUUM``
    (docs/storage.md)."""
    driver = conn.connection.driver_connection  # outside a transaction: VACUUM refuses to run in one
    assert driver is not None
    if driver.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
        return
    if driver.execute("PRAGMA auto_vacuum").fetchone()[0] == 0:
        driver.execute("PRAGMA auto_vacuum = INCREMENTAL")
        with contextlib.suppress(sqlite3.OperationalError):  # another process is creating it too
            driver.execute("VACUUM")


def _run(engine: Engine, action: str, *args: Any) -> str | None:
    with _locked(engine) as conn:
        before = _current(conn)
        # SQLite: the references are checked around a migration that runs (two scans of the whole
        # database: seconds at a million steps), not around an upgrade of a database already at head
        at_head = action == "upgrade" and args[0] in ("head", head()) and before == head()
        checked = engine.dialect.name == "sqlite" and not at_head
        broken_before = len(_broken_references(conn)) if checked else 0
        try:
            getattr(command, action)(alembic_config(conn), *args)
        except CommandError as exc:
            raise UsageError(f"{action} failed: {exc}") from None
        after = _current(conn)
        if checked and after != before:
            _check_foreign_keys(conn, broken_before)
        return after


def _current(conn: Connection) -> str | None:
    heads = MigrationContext.configure(conn).get_current_heads()
    return ", ".join(heads) if heads else None


def upgrade_engine(engine: Engine, rev: str = "head") -> str | None:
    return _run(engine, "upgrade", rev)


@contextmanager
def _engine(url: str) -> Iterator[Engine]:
    engine = create_sql_engine(url)
    try:
        yield engine
    except DBAPIError as exc:
        raise ConfigurationError(f"database {display_url(url)}: {exc.orig}") from None
    finally:
        engine.dispose()


def upgrade(url: str, rev: str = "head") -> str | None:
    """Migrate the database at ``url`` up to ``rev``; returns the revision it is at afterwards."""
    with _engine(url) as engine:
        return upgrade_engine(engine, rev)


def downgrade(url: str, rev: str) -> str | None:
    """Migrate down to ``rev`` (``base`` drops every table); returns the revision afterwards."""
    with _engine(url) as engine:
        return _run(engine, "downgrade", rev)


def current(url: str) -> str | None:
    """The revision the database is at; None when it has no flow-engine tables."""
    with _engine(url) as engine:
        try:
            conn = engine.connect()
        except OperationalError as exc:
            raise ConfigurationError(f"cannot connect to database {display_url(url)}: {exc.orig}") from None
        with conn:
            return _current(conn)


def revision(url: str, message: str, rev_id: str | None = None) -> Any:
    """Autogenerate the next revision by comparing the models with the database at ``url`` (at head)."""
    with _engine(url) as engine, _locked(engine) as conn:
        if rev_id is None:
            number = len(list(script_directory().walk_revisions())) + 1
            rev_id = f"{number:04d}_{'_'.join(message.lower().split())[:20]}"
        return command.revision(alembic_config(conn), message=message, autogenerate=True, rev_id=rev_id)
