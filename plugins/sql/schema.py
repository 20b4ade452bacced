"""Is the database's schema the one this code expects? Checked once when a store opens, cheaply.

The check reads ``alembic_version`` with one query and compares it to ``HEAD``, the newest revision in
``migrations/versions`` beside this module (a test keeps the two equal), so the usual start-up never
imports Alembic. Otherwise: a SQLite database (the default one or any file) is created or upgraded on
the spot; a server database is refused with a message naming ``flow db upgrade``, because migrating a shared
database is a decision for its owner, not a side effect of running a flow.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from flow_engine.plugin import ConfigurationError

from .connect import display_url

HEAD = "0006_batch_line"


def stored_revisions(engine: Engine) -> set[str]:
    """The revision(s) in ``alembic_version``; empty when the table does not exist (a new database)."""
    with engine.connect() as conn:
        try:
            rows = conn.execute(text("SELECT version_num FROM alembic_version")).all()
        except DBAPIError as exc:
            if _is_missing_table(exc):
                return set()
            raise
    return {row[0] for row in rows}


def _is_missing_table(exc: DBAPIError) -> bool:
    message = str(exc.orig).lower()
    return (
        "no such table" in message
        or "does not exist" in message
        or "undefinedtable" in type(exc.orig).__name__.lower()
    )


def ensure_schema(engine: Engine) -> None:
    """Make sure ``engine``'s database is at ``HEAD``: upgrade SQLite, refuse anything else behind."""
    revisions = stored_revisions(engine)
    if revisions == {HEAD}:
        return
    from . import migrate  # Alembic is imported only when something has to be done

    where = display_url(engine.url)
    for revision in revisions:
        if not migrate.is_known(revision):
            raise ConfigurationError(
                f"database {where} is at schema revision '{revision}', which this version of flow-engine "
                "does not know (was it written by a newer flow-engine?); upgrade flow-engine or use "
                "another database"
            )
    if engine.dialect.name == "sqlite":
        migrate.upgrade_engine(engine, "head")
        return
    if not revisions:
        raise ConfigurationError(
            f"database {where} has no flow-engine tables yet; create them with `flow db upgrade` "
            "(add --db URL, or set FLOW_ENGINE_DATABASE_URL, to name this database)"
        )
    raise ConfigurationError(
        f"database {where} is at schema revision '{', '.join(sorted(revisions))}', behind this "
        f"flow-engine's '{HEAD}'; run `flow db upgrade` to migrate it (back it up first)"
    )
