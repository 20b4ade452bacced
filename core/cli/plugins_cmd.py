"""``flow plugins``: every plugin, its distribution and version, what it provides, and its status.

Status comes from ``PluginRegistry.statuses`` (loaded / failed with the error / disabled by
``FLOW_ENGINE_DISABLE_PLUGINS`` / not-selected by ``FLOW_ENGINE_PLUGINS``); what a plugin provides
comes from asking the loaded ones (``PluginRegistry.provides()``). Asking is also where two plugins
claiming one name is detected: that is a ``PluginConflictError`` naming both, and exit 2.
"""

from __future__ import annotations

import json
from typing import Any

import click

from flow_engine.cli.options import db_option

PROVIDES_ORDER = ("step types", "storage", "model providers", "executors")  # then what plugins add


def collect() -> list[dict[str, Any]]:
    """One dict per plugin, in registry order (entry points by name, then in-code plugins)."""
    from flow_engine.engine import get_engine

    registry = get_engine().plugins
    provides = registry.provides()  # raises PluginConflictError on a name claimed twice
    rows = []
    for status in registry.statuses:
        given = provides.get(status.name, {}) if status.status == "loaded" else {}
        rows.append(
            {
                "name": status.name,
                "module": status.module,
                "distribution": status.distribution,
                "version": status.version,
                "builtin": status.builtin,
                "status": status.status,
                "error": status.error,
                "provides": {key: given[key] for key in PROVIDES_ORDER if key in given}
                | {k: v for k, v in given.items() if k not in (*PROVIDES_ORDER, "settings", "hooks")}
                | {key: given[key] for key in ("settings", "hooks") if key in given},
            }
        )
    return rows


def _print_text(rows: list[dict[str, Any]]) -> None:
    if not rows:
        click.echo("No plugins (entry-point group 'flow_engine').")
        return
    colours = {"loaded": "green", "failed": "red", "disabled": "yellow", "not-selected": "yellow"}
    for row in rows:
        origin = f"{row['distribution']} {row['version']}" if row["distribution"] else "registered in code"
        if row["builtin"]:
            origin += ", built-in"
        click.secho(row["name"], bold=True, nl=False)
        click.echo(f"  {origin}  ", nl=False)
        click.secho(row["status"], fg=colours.get(row["status"]))
        click.echo(f"  module: {row['module']}")
        if row["error"]:
            click.secho(f"  error: {row['error']}", fg="red")
        for what, names in row["provides"].items():
            click.echo(f"  {what}: {', '.join(names)}")
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    click.echo("\n" + ", ".join(f"{n} {status}" for status, n in counts.items()))


@click.command("plugins")
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, one object per plugin.")
def plugins(as_json: bool) -> None:
    """List plugins, their versions, what they provide and their status.

    \b
    Status: loaded, failed (the import error, or a hook no plugin specifies), disabled
    (FLOW_ENGINE_DISABLE_PLUGINS) or not-selected (FLOW_ENGINE_PLUGINS).
    """
    rows = collect()
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
    else:
        _print_text(rows)
