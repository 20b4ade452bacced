"""SQL storage backend (SQLAlchemy 2): ``sqlite:///path.db`` (the default) and ``postgresql://...``.

Importing this plugin is cheap on purpose: ``flow --help`` loads every plugin, and SQLAlchemy alone
takes ~0.15 s to import, so it is imported only when a store is opened.

Modules: ``types`` (portable UUID/JSON/UTC datetime), ``models`` (the tables), ``repo`` (the seed's
repositories), ``connect`` (engines and SQLite settings), ``schema`` (the cheap up-to-date check),
``migrate`` (Alembic, config in code), ``dml`` + ``writer`` (the write path), ``durable`` (cancel,
crash and resume writes), ``store`` (the RunStore).
"""

from __future__ import annotations

from typing import Any

from flow_engine.hookspecs import hookimpl
from flow_engine.storage import RunStore, StorageBackendInfo

SCHEMES = ("sqlite", "postgresql", "postgres")


def open_store(url: str) -> RunStore:
    """The factory of the SQL schemes: opens the database (a SQLite one is created or upgraded)."""
    from .store import SqlStore

    return SqlStore(url)


@hookimpl
def register_storage_backends(register: Any) -> None:
    register(
        StorageBackendInfo(
            "sql",
            SCHEMES,
            open_store,
            "SQLite file or PostgreSQL (psycopg 3) via SQLAlchemy; migrations: `flow db upgrade`",
        )
    )
