"""The response cache in SQL (``llm_cache``, revision 0005): one row per answer, by its key's hash.

A lookup and its hit count are one short transaction on a connection of their own (run in a thread by
the store, so the event loop never waits); a new answer is an upsert, so two processes asking the
same question at once both succeed and the later answer stays.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import Engine

from flow_engine.storage import CacheEntry, CacheModelStats

from .models import llm_cache

_COLUMNS = [llm_cache.c[name] for name in CacheEntry.model_fields]


def cache_get(engine: Engine, lock: Any, key: str, now: datetime) -> CacheEntry | None:
    c = llm_cache.c
    with lock, engine.begin() as conn:
        row = conn.execute(select(*_COLUMNS).where(c.key == key)).mappings().first()
        if row is None or (row["expires_at"] is not None and row["expires_at"] <= now):
            return None
        conn.execute(update(llm_cache).where(c.key == key).values(hits=c.hits + 1, last_hit_at=now))
    entry = CacheEntry.model_validate(dict(row))
    entry.hits += 1
    entry.last_hit_at = now
    return entry


def cache_put(engine: Engine, lock: Any, entry: CacheEntry) -> None:
    values = entry.model_dump()
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    stmt = insert(llm_cache).values(**values)
    replaced = {k: stmt.excluded[k] for k in values if k != "key"}
    with lock, engine.begin() as conn:
        conn.execute(stmt.on_conflict_do_update(index_elements=["key"], set_=replaced))


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
