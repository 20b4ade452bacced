"""SQL storage backend (SQLAlchemy 2): ``sqlite:///path.db`` (the default) and ``postgresql://...``.

Importing this plugin is cheap on purpose: ``flow --help`` loads it to list ``flow db``, and
SQLAlchemy alone takes ~0.15 s to import, so it is imported only when a store is opened.

Modules: ``types`` (portable UUID/JSON/UTC datetime), ``models`` (the tables), ``repo`` (the seed's
repositories), ``connect`` (engines and SQLite settings), ``schema`` (the cheap up-to-date check),
``migrate`` (Alembic, config in code), ``dml`` + ``writer`` (the write path), ``durable`` (cancel,
crash and resume writes), ``store`` (the RunStore), ``cli`` (``flow db``), ``schemes`` (its URL schemes).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from flow_engine.plugin import ConfigurationError, hookimpl

from .schemes import SCHEMES

if TYPE_CHECKING:  # pragma: no cover
    import click

    from flow_engine.plugin import RunStore


def open_store(url: str) -> RunStore:
    """The factory of the SQL schemes: opens the database (a SQLite one is created or upgraded)."""
    from .store import SqlStore

    return SqlStore(url)


def local_path(url: str) -> Path | None:
    """The SQLite file a URL stores into, as SQLAlchemy opens it; None for a server or in memory."""
    if not url.lower().startswith("sqlite"):
        return None  # no SQLAlchemy import for a server URL
    from .connect import sqlite_path

    try:
        return sqlite_path(url)
    except ConfigurationError:  # a malformed URL: opening the store reports it
        return None


@hookimpl
def register_storage_backends(register: Any) -> None:
    from flow_engine.plugin import StorageBackendInfo

    register(
        StorageBackendInfo(
            "sql",
            SCHEMES,
            open_store,
            "SQLite file or PostgreSQL (psycopg 3) via SQLAlchemy; migrations: `flow db upgrade`",
            local_path=local_path,
        )
    )


@hookimpl
def register_commands(cli: click.Group) -> None:
    from .cli import db

    cli.add_command(db)
