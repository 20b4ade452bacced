"""Deleting old runs (``flow runs prune``) in short batches, while flows keep writing.

Each batch is one transaction: select up to ``batch_size`` finished top-level runs (oldest first,
walking ``(created_at, id)`` onwards from the previous batch, so a run that must stay is looked at
once), find their child runs level by level (``parent_run_id`` index), leave out every tree that holds
a run not finished (running, pending, waiting for input), then delete the trees' steps, LLM requests
and runs with one statement each. SQLite takes its write lock for that transaction only
(``BEGIN IMMEDIATE``) and the next batch waits as long as the last one took, so the writers of running
flows get the lock in between; PostgreSQL locks the selected rows (``FOR UPDATE SKIP LOCKED``), so a
run being resumed meanwhile is either pruned before or kept.

Space: a SQLite file created with ``auto_vacuum=INCREMENTAL`` (every new one, see ``migrate``) gives
the freed pages back with ``PRAGMA incremental_vacuum``, a few thousand pages per transaction. Older
files keep the pages for new runs; ``VACUUM`` returns them (docs/storage.md). PostgreSQL's autovacuum
makes the space reusable; ``VACUUM FULL`` returns it.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, literal_column, select, tuple_
from sqlalchemy.engine import Connection, Engine

from flow_engine.plugin import PruneResult, UsageError
from flow_engine.storage import PRUNABLE_STATUSES, prunable_statuses

from .connect import BEGIN_OPTION
from .models import flow_runs, flow_step_runs, llm_requests

VACUUM_PAGES = 2_000  # pages given back per transaction of the incremental vacuum
MAX_PAUSE_S = 0.1  # longest pause between two batches (SQLite: the writers' turn)


def roots_query(
    before: datetime,
    statuses: Sequence[str],
    flow_name: str | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
    *,
    sqlite: bool,
    lock: bool,
) -> Any:
    """The next batch of top-level runs to prune, oldest first: a walk of ``ix_flow_runs_created_at_id``
    from ``after`` (tests check the plan). On SQLite ``+status`` keeps the planner on that walk rather
    than on the status index, which would have to sort every old run."""
    c = flow_runs.c
    status = literal_column(f"+{flow_runs.name}.status") if sqlite else c.status
    stmt = select(c.id, c.created_at).where(
        c.parent_run_id.is_(None), status.in_(list(statuses)), c.created_at < before
    )
    if flow_name is not None:
        stmt = stmt.where(c.flow_name == flow_name)
    if after is not None:
        stmt = stmt.where(tuple_(c.created_at, c.id) > tuple_(after[0], after[1]))
    stmt = stmt.order_by(c.created_at, c.id).limit(limit)
    return stmt.with_for_update(skip_locked=True) if lock else stmt


def _trees(conn: Connection, roots: list[uuid.UUID], lock: bool) -> dict[uuid.UUID, list[uuid.UUID]]:
    """Each root's run ids (itself and its descendants) whose runs are all finished; a tree with a run
    not finished (running, pending, waiting for input) is left out."""
    c = flow_runs.c
    root_of = {root: root for root in roots}
    members: dict[uuid.UUID, list[uuid.UUID]] = {root: [root] for root in roots}
    alive: set[uuid.UUID] = set()
    level = roots
    for _ in range(100):  # nesting depth; a parent chain never cycles
        if not level:
            break
        stmt = select(c.id, c.status, c.parent_run_id).where(c.parent_run_id.in_(level))
        rows = conn.execute(stmt.with_for_update() if lock else stmt).all()
        level = []
        for run_id, status, parent in rows:
            root = root_of[parent]
            root_of[run_id] = root
            members[root].append(run_id)
            if status not in PRUNABLE_STATUSES:
                alive.add(root)
            level.append(run_id)
    return {root: ids for root, ids in members.items() if root not in alive}


def _count(conn: Connection, table: Any, column: Any, ids: list[uuid.UUID]) -> int:
    return int(conn.execute(select(func.count()).select_from(table).where(column.in_(ids))).scalar_one())


def prune(
    engine: Engine,
    lock: Any,
    before: datetime,
    *,
    statuses: Sequence[str] | None = None,
    flow_name: str | None = None,
    dry_run: bool = False,
    batch_size: int = 200,
    on_batch: Callable[[list[uuid.UUID]], None] | None = None,
) -> PruneResult:
    wanted = prunable_statuses(statuses)
    if batch_size < 1:
        raise UsageError("the batch size of a prune must be at least 1")
    sqlite = engine.dialect.name == "sqlite"
    result = PruneResult()
    after: tuple[datetime, uuid.UUID] | None = None
    while True:
        started = time.monotonic()
        with lock, _transaction(engine, sqlite) as conn:
            rows = conn.execute(
                roots_query(
                    before,
                    wanted,
                    flow_name,
                    after,
                    batch_size,
                    sqlite=sqlite,
                    lock=not sqlite and not dry_run,
                )
            ).all()
            if not rows:
                break
            after = (rows[-1][1], rows[-1][0])
            trees = _trees(conn, [row[0] for row in rows], lock=not sqlite and not dry_run)
            ids = [run_id for tree in trees.values() for run_id in tree]
            if ids:
                result.runs += len(trees)
                result.child_runs += len(ids) - len(trees)
                steps, requests = flow_step_runs.c.flow_run_id, llm_requests.c.flow_run_id
                if dry_run:
                    result.steps += _count(conn, flow_step_runs, steps, ids)
                    result.llm_requests += _count(conn, llm_requests, requests, ids)
                else:
                    # steps first: they point at their LLM requests
                    result.steps += conn.execute(delete(flow_step_runs).where(steps.in_(ids))).rowcount
                    result.llm_requests += conn.execute(
                        delete(llm_requests).where(requests.in_(ids))
                    ).rowcount
                    conn.execute(delete(flow_runs).where(flow_runs.c.id.in_(ids)))
        if ids and on_batch is not None:
            on_batch(ids)
        if sqlite and not dry_run:
            time.sleep(min(MAX_PAUSE_S, time.monotonic() - started))  # the writers' turn
    if sqlite:
        _sqlite_space(engine, lock, result, vacuum=not dry_run)
    else:
        result.space_note = (
            "PostgreSQL: autovacuum makes the space of deleted rows reusable; "
            "VACUUM FULL returns it to the file system (docs/storage.md)"
        )
    return result


@contextlib.contextmanager
def _transaction(engine: Engine, sqlite: bool) -> Iterator[Connection]:
    with engine.connect() as conn:
        if sqlite:
            conn = conn.execution_options(**{BEGIN_OPTION: "IMMEDIATE"})
        with conn.begin():
            yield conn


def _pragma(engine: Engine, lock: Any, sql: str) -> Any:
    with lock, engine.connect() as conn:
        driver = conn.connection.driver_connection
        assert driver is not None
        return driver.execute(sql).fetchone()[0]


def _sqlite_space(engine: Engine, lock: Any, result: PruneResult, *, vacuum: bool) -> None:
    """Give free pages back (incremental vacuum), or say how much is free and how to get it back."""
    page_size = int(_pragma(engine, lock, "PRAGMA page_size"))
    free = int(_pragma(engine, lock, "PRAGMA freelist_count"))
    if int(_pragma(engine, lock, "PRAGMA auto_vacuum")) != 2:  # 2 = INCREMENTAL
        result.space_note = (
            f"{free * page_size:,} bytes of free pages stay in the SQLite file for new runs; run "
            "VACUUM to return them to the file system (docs/storage.md)"
        )
        return
    if not vacuum:
        return
    before = int(_pragma(engine, lock, "PRAGMA page_count"))
    while free:
        with lock, engine.connect() as conn:
            driver = conn.connection.driver_connection
            assert driver is not None
            # executescript runs the pragma to its end (execute() frees one page per call)
            driver.executescript(f"BEGIN IMMEDIATE; PRAGMA incremental_vacuum({VACUUM_PAGES}); COMMIT;")
        left = int(_pragma(engine, lock, "PRAGMA freelist_count"))
        if left >= free:  # nothing more to give back (pages freed meanwhile are reused first)
            break
        free = left
        time.sleep(0.005)
    result.bytes_freed = (before - int(_pragma(engine, lock, "PRAGMA page_count"))) * page_size
    with contextlib.suppress(Exception):  # the file shrinks once the WAL is copied back
        _pragma(engine, lock, "PRAGMA wal_checkpoint(PASSIVE)")
