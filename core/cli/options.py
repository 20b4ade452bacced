"""Options every ``flow`` command shares: ``--db URL`` is accepted before or after the subcommand
(``flow --db URL runs`` and ``flow runs --db URL`` mean the same)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])
DB_HELP = "Storage URL (sqlite:///file.db, postgresql+psycopg://...); default: SQLite in the user data dir."


def use_database(url: str | None) -> None:
    """Point the engine at ``url`` (a fresh engine is built on next use)."""
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


def finite_usd(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """``--max-cost``: NaN, infinity or a negative amount would never stop a run; refused (exit 2)."""
    import math

    if value is not None and not (math.isfinite(value) and value >= 0):
        raise click.BadParameter(f"{value} is not an amount of USD (a finite number >= 0)")
    return value
