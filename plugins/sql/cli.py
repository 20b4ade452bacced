"""``flow db``: where the database is, and its schema migrations (Alembic, shipped in the package).

``flow db path`` prints the SQLite file (or the server URL, password hidden); ``upgrade``, ``current``
and ``downgrade`` run the SQL backend's migrations against ``--db URL`` / ``FLOW_ENGINE_DATABASE_URL``
/ the default SQLite file. A SQLite database is upgraded automatically on first use anyway; a server
database (PostgreSQL) is only ever migrated by ``flow db upgrade``. Only ``upgrade`` creates a SQLite
file: ``current`` says "base" and ``downgrade`` refuses (exit 2) when it does not exist. A URL that
cannot be read is refused before anything is asked. The SQL plugin adds this command through
``register_commands``; ``--db URL`` is accepted before or after any subcommand.
"""

from __future__ import annotations

import click

from flow_engine.cli.options import db_option, require_database
from flow_engine.plugin import UsageError, get_engine, redact_url

from . import local_path
from .schemes import SCHEMES


def _database_url() -> str:
    return get_engine().database_url


def _sql_url(command: str) -> str:
    url = _database_url()
    if "://" not in url:
        raise UsageError(
            f"database URL '{url}' has no scheme; use e.g. sqlite:///path/to/file.db or postgresql+psycopg://..."
        )
    if url.split("://", 1)[0].lower().split("+", 1)[0] not in SCHEMES:
        raise UsageError(
            f"`flow db {command}` works on SQL databases (sqlite:///..., postgresql+psycopg://...), "
            f"not '{url.split('://', 1)[0]}://'; pass --db URL"
        )
    from .connect import parse_url

    parse_url(url)  # a URL SQLAlchemy cannot read is refused before anything is asked or done
    return url


def _describe(revision: str | None, head: str) -> str:
    if revision is None:
        return "no flow-engine tables (base)"
    if revision == head:
        return f"{revision} (head)"
    return f"{revision} (head is {head}; `flow db upgrade` migrates)"


@click.group("db")
@db_option
def db() -> None:
    """Database: path, upgrade, current, downgrade."""


@db.command("path")
@db_option
def path() -> None:
    """Print where runs are stored: the SQLite file, or the database URL."""
    url = _database_url()
    if url.split("://", 1)[0].split("+", 1)[0] == "sqlite":
        from .connect import sqlite_path

        file = sqlite_path(url)
        if file is not None:
            click.echo(str(file.expanduser().resolve()))
            return
    click.echo(redact_url(url))


@db.command("upgrade")
@click.argument("revision", default="head")
@db_option
def upgrade(revision: str) -> None:
    """Migrate the database up to REVISION (default: the newest, head)."""
    from . import migrate

    url = _sql_url("upgrade")
    before = migrate.current(url)
    after = migrate.upgrade(url, revision)
    where = redact_url(url)
    if before == after:
        click.echo(f"{where} is already at {_describe(after, migrate.head())}.")
    else:
        click.echo(f"Upgraded {where} from {before or 'base'} to {_describe(after, migrate.head())}.")


@db.command("current")
@db_option
def current() -> None:
    """Print the schema revision the database is at."""
    from . import migrate

    url = _sql_url("current")
    path = local_path(url)
    if path is not None and not path.exists():  # asking must not create an empty database file
        click.echo(_describe(None, migrate.head()))
        return
    click.echo(_describe(migrate.current(url), migrate.head()))


@db.command("downgrade")
@click.argument("revision")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@db_option
def downgrade(revision: str, yes: bool) -> None:
    """Migrate the database down to REVISION ("base" drops every flow-engine table and its data)."""
    from . import migrate

    url = _sql_url("downgrade")
    require_database()  # a SQLite file that does not exist is refused, not created to be downgraded
    where = redact_url(url)
    if not yes:
        click.confirm(
            f"Downgrade {where} to {revision}? Data in removed tables or columns is lost", abort=True
        )
    before = migrate.current(url)
    after = migrate.downgrade(url, revision)
    click.echo(f"Downgraded {where} from {before or 'base'} to {after or 'base (no flow-engine tables)'}.")
