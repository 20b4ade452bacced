"""The response cache in SQL (``llm_cache``, revision 0005): one row per answer, by its key's hash.

A lookup is a read on a connection of its own (in a thread, so the event loop never waits); its hit
count and a new answer go through the store's writer thread like every other write (a second writer
would wait on SQLite's lock). A new answer is an upsert, so two processes asking the same question at
once both succeed and the later answer stays.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.engine import Engine

from flow_engine.plugin import CacheEntry, CacheModelStats

from .models import llm_cache

_COLUMNS = [llm_cache.c[name] for name in CacheEntry.model_fields]


def cache_read(engine: Engine, lock: Any, key: str, now: datetime) -> CacheEntry | None:
    """The entry under ``key`` unless it expired by ``now`` (a read on a connection of its own)."""
    c = llm_cache.c
    with lock, engine.connect() as conn:
        row = conn.execute(select(*_COLUMNS).where(c.key == key)).mappings().first()
    if row is None or (row["expires_at"] is not None and row["expires_at"] <= now):
        return None
    return CacheEntry.model_validate(dict(row))


def count_hit(cursor: Any, dml: Any, key: str, now: datetime) -> None:
    """A writer action: one more hit of ``key``."""
    c = llm_cache.c

    def build() -> Any:
        return (
            update(llm_cache)
            .where(c.key == bindparam("k"))
            .values(hits=c.hits + 1, last_hit_at=bindparam("now"))
        )

    cursor.execute(*dml.statement("llm_cache_hit", build, {"k": key, "now": now}))


def put_entry(cursor: Any, dml: Any, values: dict[str, Any]) -> None:
    """A writer action: insert the entry, or replace the one with the same key."""

    def build() -> Any:
        if dml.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
        stmt = insert(llm_cache).values({name: bindparam(name) for name in values})
        replaced = {name: stmt.excluded[name] for name in values if name != "key"}
        return stmt.on_conflict_do_update(index_elements=["key"], set_=replaced)

    cursor.execute(*dml.statement("llm_cache_put", build, values))


def cache_stats(engine: Engine, lock: Any) -> list[CacheModelStats]:
    c = llm_cache.c
    stmt = (
        select(
            c.model,
            func.count(),
            func.coalesce(func.sum(c.hits), 0),
            func.coalesce(func.sum(c.hits * func.coalesce(c.cost, 0.0)), 0.0),
            func.min(c.created_at),
            func.max(c.created_at),
        )
        .group_by(c.model)
        .order_by(func.count().desc(), c.model)
    )
    with lock, engine.connect() as conn:
        rows = conn.execute(stmt).all()
    stamp = llm_cache.c.created_at.type
    processor = stamp.result_processor(engine.dialect, None)  # min()/max() lose the column's type

    def when(value: Any) -> datetime | None:
        return processor(value) if processor is not None and value is not None else value

    return [
        CacheModelStats(str(m), int(n), int(h), float(saved), when(first), when(last))
        for m, n, h, saved, first, last in rows
    ]


def cache_clear(engine: Engine, lock: Any, model: str | None, older_than: datetime | None) -> int:
    c = llm_cache.c
    stmt = delete(llm_cache)
    if model is not None:
        stmt = stmt.where(c.model == model)
    if older_than is not None:
        stmt = stmt.where(c.created_at < older_than)
    with lock, engine.begin() as conn:
        return int(conn.execute(stmt).rowcount or 0)
