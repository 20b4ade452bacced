"""Alembic environment of flow-engine's SQL storage backend.

There is no alembic.ini: ``flow_engine.plugins.sql.migrate`` builds the config in code and passes an
open connection (inside the transaction that holds the migration lock) as
``config.attributes["connection"]``. Given only ``sqlalchemy.url`` (e.g. ``alembic -x``-style use by a
maintainer), it opens its own engine with the same SQLite settings the store uses.
"""

from __future__ import annotations

from typing import Any

from alembic import context

from flow_engine.plugins.sql.models import Base

config = context.config
target_metadata = Base.metadata


def _configure(**kwargs: Any) -> None:
    context.configure(
        target_metadata=target_metadata,
        compare_type=True,
        # new revisions refer to our column types as types.UUID() etc. (see script.py.mako)
        user_module_prefix="types.",
        **kwargs,
    )


def run_migrations_offline() -> None:
    url = config.get_main_option("sqlalchemy.url")
    _configure(url=url, literal_binds=True, render_as_batch=bool(url and url.startswith("sqlite")))
    with context.begin_transaction():
        context.run_migrations()


def _run_with(connection: object) -> None:
    _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")  # type: ignore[attr-defined]
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_with(connection)
        return
    from flow_engine.plugins.sql.connect import create_sql_engine

    engine = create_sql_engine(config.get_main_option("sqlalchemy.url") or "")
    try:
        with engine.connect() as conn:
            _run_with(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
