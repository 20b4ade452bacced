"""``flow cache stats`` / ``flow cache clear``: what the response cache holds, and emptying it.

The cache is kept by the store (``llm_cache``), so these commands see the cache of every process and
worker using the same database (``--db``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from flow_engine.cli.format import fmt_cost
from flow_engine.cli.options import db_option, require_database
from flow_engine.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    from flow_engine.storage import RunStore


def _store() -> RunStore:
    from flow_engine.engine import get_engine

    require_database()  # a mistyped --db must not leave an empty database behind
    store = get_engine().store
    if not store.has_cache:
        raise UsageError(f"the store {store.url} keeps no response cache")
    return store


@click.group("cache")
@db_option
def cache() -> None:
    """The response cache: answers to repeated LLM calls (docs/caching.md)."""


@cache.command("stats")
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def stats(as_json: bool) -> None:
    """Entries, hits and the cost the hits saved, per model."""
    found = _store().cache_stats()
    if as_json:
        rows: list[dict[str, Any]] = [
            {
                "model": s.model,
                "entries": s.entries,
                "hits": s.hits,
                "saved_cost": s.saved_cost,
                "oldest": s.oldest.isoformat() if s.oldest else None,
                "newest": s.newest.isoformat() if s.newest else None,
            }
            for s in found
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    if not found:
        click.echo("The response cache is empty.")
        return
    width = max(len("model"), *(len(s.model) for s in found))
    click.echo(f"{'model':<{width}}  {'entries':>8}  {'hits':>8}  {'saved':>10}  oldest")
    for s in found:
        oldest = f"{s.oldest:%Y-%m-%d %H:%M}" if s.oldest else "-"
        saved_here = fmt_cost(s.saved_cost)
        click.echo(f"{s.model:<{width}}  {s.entries:>8,}  {s.hits:>8,}  {saved_here:>10}  {oldest}")
    entries, hits = sum(s.entries for s in found), sum(s.hits for s in found)
    saved = sum(s.saved_cost for s in found)
    click.echo(f"{'total':<{width}}  {entries:>8,}  {hits:>8,}  {fmt_cost(saved):>10}")


@cache.command("clear")
@db_option
@click.option("--model", metavar="MODEL", help="Only the entries of this model (e.g. openai/gpt-4o-mini).")
@click.option("--older-than", metavar="AGE", help="Only entries older than this: 30d, 12h, 2w, 30m.")
def clear(model: str | None, older_than: str | None) -> None:
    """Delete cached answers (all of them unless --model / --older-than narrow it)."""
    from flow_engine.cli.ages import parse_age

    before = datetime.now(UTC) - parse_age(older_than) if older_than else None
    removed = _store().cache_clear(model=model, older_than=before)
    click.echo(f"Removed {removed:,} cached answer(s).")
