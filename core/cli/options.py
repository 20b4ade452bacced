"""Options every ``flow`` command shares: ``--db URL`` is accepted before or after the subcommand
(``flow --db URL runs`` and ``flow runs --db URL`` mean the same).

Commands that only look at runs already recorded (``runs``, ``show``, ``wait``, ``resume``, ``cancel``,
``recover``) are marked ``reads_database``: they never create a database; a SQLite file that does not
exist is a usage error (exit 2) naming the path, so a typo in ``--db`` is not answered with "No runs".
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])
DB_HELP = "Storage URL (sqlite:///file.db, postgresql+psycopg://...); default: SQLite in the user data dir."


_given_database: str | None = None  # this command line's --db, for the commands it suggests


def given_database() -> str | None:
    """The ``--db URL`` given on this command line (not one from the environment), if any."""
    return _given_database


def use_database(url: str | None, *, given: bool = True) -> None:
    """Point the engine at ``url`` (a fresh engine is built on next use); ``given``: on the command
    line, so that the commands this one suggests repeat it."""
    global _given_database
    _given_database = url if given else None  # `flow`'s own option first: each command line afresh
    if url:
        os.environ["FLOW_ENGINE_DATABASE_URL"] = url
        from flow_engine.engine import reset_engine

        reset_engine()


def _set_db(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value and not ctx.resilient_parsing:
        use_database(value)


def db_option(command: F) -> F:
    """``--db URL`` on a command (the group has it too); eager, so it applies before anything is read."""
    return click.option(
        "--db",
        metavar="URL",
        expose_value=False,
        is_eager=True,
        callback=_set_db,
        help=DB_HELP,
    )(command)


def require_database() -> None:
    """Refuse (``UsageError``, exit 2) when the database named by ``--db`` / FLOW_ENGINE_DATABASE_URL is a
    local file that does not exist: opening it would create an empty one. Server databases are not
    checked here (opening one creates nothing but the schema)."""
    from flow_engine.engine import get_engine
    from flow_engine.errors import UsageError
    from flow_engine.storage import pick_backend

    engine = get_engine()
    url = engine.database_url
    backend = pick_backend(url, engine.plugins.storage_backends())
    path = backend.local_path(url) if backend.local_path is not None else None
    if path is not None and not path.exists():
        raise UsageError(
            f"no database at {path.absolute()}: nothing has been recorded there (check --db or "
            "FLOW_ENGINE_DATABASE_URL; `flow db path` prints the default)"
        )


def reads_database(command: F) -> F:
    """Mark a command's function as reading recorded runs: it checks ``require_database`` first. A
    group (``flow runs``) passing on to a subcommand does not: the subcommand's own ``--db`` is not
    read yet, and the subcommand checks what it reads itself."""

    @functools.wraps(command)
    def checked(*args: Any, **kwargs: Any) -> Any:
        if click.get_current_context().invoked_subcommand is None:
            require_database()
        return command(*args, **kwargs)

    return checked  # type: ignore[return-value]


def finite_usd(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """``--max-cost``: NaN, infinity or a negative amount would never stop a run; refused (exit 2)."""
    import math

    if value is not None and not (math.isfinite(value) and value >= 0):
        raise click.BadParameter(f"{value} is not an amount of USD (a finite number >= 0)")
    return value


def finite_seconds(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """A duration in seconds (``--stale-after``, ``flow wait --timeout``): NaN or a negative number
    would wait forever or never, infinity or more than ``ages.MAX_AGE`` (about 1000 years) cannot be
    counted from now (``OverflowError``); refused (exit 2) naming the option."""
    from .ages import MAX_AGE

    most = MAX_AGE.total_seconds()
    if value is not None and not 0 <= value <= most:  # NaN too
        raise click.BadParameter(
            f"{value:g} is not a usable number of seconds: a finite number >= 0 is needed, and more "
            f"than {most:.0f} (about 1000 years) is too long a duration"
        )
    return value
