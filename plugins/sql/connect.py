"""Opening a SQLAlchemy engine for a storage URL, with the settings that make SQLite safe to share.

SQLite: WAL (readers never wait for the writer), ``synchronous=NORMAL`` (durable at checkpoints, fast
commits), foreign keys on, a 30 s busy timeout, and transactions we begin ourselves: pysqlite's own
implicit BEGIN is switched off, reads begin a plain (deferred) transaction and writers
``BEGIN IMMEDIATE``, which takes the write lock up front. A deferred transaction that later tries to
write must upgrade its lock and can fail at once with "database is locked" (the busy timeout does not
apply to lock upgrades); taking the lock first makes writers queue behind each other instead.

PostgreSQL: ``postgresql://`` means psycopg 3 (``postgresql+psycopg://``); connections are pre-pinged.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool

from flow_engine.plugin import ConfigurationError, redact_url

SQLITE_BUSY_TIMEOUT_S = 30.0
BEGIN_OPTION = "flow_engine_sqlite_begin"  # execution option: "IMMEDIATE" for SA-managed write transactions


def parse_url(url: str) -> URL:
    """The URL SQLAlchemy should use: ``postgresql://`` and ``postgres://`` mean psycopg 3.

    A URL SQLAlchemy cannot read (``host:notaport``, an unclosed ``[`` of an IPv6 address) is a
    ``ConfigurationError`` naming the URL, its password hidden, and what is wrong with it."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: int() of the port
        raise ConfigurationError(f"invalid database URL '{display_url(url)}': {_url_problem(url)}") from None
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise ConfigurationError(
            f"invalid database URL '{display_url(url)}': port {parsed.port} is not a port number (1-65535)"
        )
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "sqlite" and (parsed.database or "").startswith("~"):
        # ``sqlite:///~/flows.db``: the home folder, for every user of the URL alike (SQLite itself
        # would open a folder literally named ``~``)
        parsed = parsed.set(database=os.path.expanduser(parsed.database or ""))
    if backend in ("postgresql", "postgres"):
        parsed = parsed.set(drivername=f"postgresql+{driver or 'psycopg'}")
    return parsed


def _url_problem(url: str) -> str:
    """What makes ``url`` unreadable, in words (never its password: only the host and port are named)."""
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme:
        return "it is not scheme://[user[:password]@]host[:port]/database (e.g. sqlite:///path/to/file.db)"
    host_and_port = re.split(r"[/?#]", rest.rpartition("@")[2] if "@" in rest else rest, maxsplit=1)[0]
    if host_and_port.startswith("[") and "]" not in host_and_port:
        return f"the IPv6 address '{host_and_port}' has no closing ']'"
    port = host_and_port.rpartition("]")[2].rpartition(":")[2] if ":" in host_and_port else ""
    if port and not port.isdigit():
        return f"the port '{port}' is not a number"
    return "it is not scheme://[user[:password]@]host[:port]/database"


def display_url(url: str | URL) -> str:
    """The URL with its password hidden, for messages (``flow_engine.plugin.redact_url``)."""
    text = url.render_as_string(hide_password=False) if isinstance(url, URL) else url
    return redact_url(text) or ""


def sqlite_path(url: str | URL) -> Path | None:
    """The database file of a SQLite URL (%-escapes decoded, an SQLite ``file:`` URI with
    ``uri=true`` included); None for an in-memory database or another backend."""
    parsed = url if isinstance(url, URL) else parse_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if str(parsed.query.get("uri", "")).lower() in ("true", "1") and database.startswith("file:"):
        database = _uri_file(database)
    if (
        database in ("", ":memory:")
        or database.startswith("file::memory:")
        or parsed.query.get("mode") == "memory"
    ):
        return None
    return Path(database)


def _uri_file(uri: str) -> str:
    """The path of an SQLite ``file:`` URI: ``file:/srv/x.db``, ``file:///srv/x.db``,
    ``file://localhost/srv/x.db`` -> ``/srv/x.db`` (``file::memory:`` stays itself)."""
    path = uri.removeprefix("file:").split("?", 1)[0]
    if path.startswith("//"):  # an authority (empty or localhost) before the absolute path
        path = "/" + path[2:].split("/", 1)[-1]
    return path if path != ":memory:" else uri


def _set_wal(cursor: Any) -> None:
    """Switching to WAL needs an exclusive lock for a moment; retry while another process holds one."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _configure_sqlite(engine: Engine, in_memory: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see module docstring)
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
            if not in_memory:
                mode = cursor.execute("PRAGMA journal_mode").fetchone()[0]
                if str(mode).lower() != "wal":
                    _set_wal(cursor)
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get(BEGIN_OPTION, "")
        conn.exec_driver_sql(f"BEGIN {mode}".strip())


def _make_folder(path: Path, url: URL) -> None:
    """Create the folder of a SQLite file; one that cannot be made (a file is in its place, no
    permission) is a ``ConfigurationError`` naming the URL, not an ``OSError`` traceback."""
    folder = path.expanduser().parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        existing = next((p for p in (folder, *folder.parents) if p.exists() or p.is_symlink()), None)
        if existing is not None and not existing.is_dir():
            reason = f"{existing} is a file, not a folder"
        else:
            reason = f"its folder {folder} cannot be created ({exc.strerror or exc})"
        raise ConfigurationError(f"cannot open database {display_url(url)}: {reason}") from None


def create_sql_engine(url: str) -> Engine:
    """An engine for ``url``; creates the folder of a SQLite file if it does not exist yet."""
    parsed = parse_url(url)
    try:
        if parsed.get_backend_name() != "sqlite":
            return create_engine(parsed, pool_pre_ping=True)
        path = sqlite_path(parsed)
        connect_args: dict[str, Any] = {"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}
        if path is None:  # one shared in-memory database: every user gets the same connection
            engine = create_engine(parsed, connect_args=connect_args, poolclass=StaticPool)
        else:
            _make_folder(path, parsed)
            engine = create_engine(parsed, connect_args=connect_args, pool_size=5, max_overflow=10)
    except ModuleNotFoundError as exc:
        raise ConfigurationError(
            f"the database driver for '{display_url(parsed)}' is not installed ({exc}); "
            "for PostgreSQL: pip install 'flow-engine[postgres]'"
        ) from None
    except ArgumentError as exc:
        raise ConfigurationError(f"invalid database URL '{display_url(parsed)}': {exc}") from None
    _configure_sqlite(engine, in_memory=path is None)
    return engine
