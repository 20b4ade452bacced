"""``SqlStore``: the ``RunStore`` of the SQL backend (SQLite and PostgreSQL through SQLAlchemy 2).

Writes are ``async``: they go to the store's writer thread (``writer.py``), which applies them with
Core statements and group commit, so the event loop never waits on the database. Reads are
synchronous, on pooled connections of their own, through the repositories (``repo.py``).

Opening a store checks the schema (``schema.py``): a SQLite database is created or upgraded as
needed, a server database behind the current revision is refused with a message naming
``flow db upgrade``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, desc, func, or_, select
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session

from flow_engine.plugin import (
    CacheEntry,
    CacheModelStats,
    ConfigurationError,
    LLMRequestRecord,
    PruneResult,
    RunChanges,
    RunFilter,
    RunRecord,
    RunStatus,
    RunStore,
    RunTotals,
    StepChanges,
    StepRecord,
    StorageError,
)
from flow_engine.storage import PRUNE_BATCH, utcnow

from .connect import create_sql_engine, display_url, sqlite_path
from .durable import (
    cancel_flag,
    claim_ended_run,
    claim_run,
    delete_unfinished_steps,
    interrupt_in_flight,
    mark_crashed,
    request_cancel,
)
from .models import FlowRunModel, flow_runs, flow_step_runs, llm_requests
from .repo import FlowRunRepo, FlowStepRunRepo, LLMRequestRepo
from .schema import ensure_schema
from .writer import Operation, Writer

_RUNS, _STEPS, _REQUESTS = flow_runs, flow_step_runs, llm_requests
_RUN_COLUMNS = frozenset(_RUNS.c.keys()) - {"id"}
_STEP_COLUMNS = frozenset(_STEPS.c.keys()) - {"id"}


def _check(columns: frozenset[str], changes: RunChanges | StepChanges, what: str) -> dict[str, Any]:
    """The change set as column values; a key that is no column is refused before anything is written."""
    unknown = changes.keys() - columns
    if unknown:
        raise KeyError(f"{what} has no field(s) {', '.join(sorted(unknown))}")
    values: dict[str, Any] = dict(changes)
    status = values.get("status")
    if isinstance(status, enum.Enum):  # drivers may store an enum's name; we store its value
        values["status"] = status.value
    return values


def cancel_flags(cursor: Any, dml: Any, run_ids: list[uuid.UUID]) -> dict[uuid.UUID, bool]:
    """``durable.cancel_flag`` of many runs at once, for a batch of writes: was a cancel requested for
    each run or a run it is a child of? One query per level of parent runs."""
    known: dict[uuid.UUID, tuple[bool, uuid.UUID | None]] = {}
    wanted = list(dict.fromkeys(run_ids))
    for _ in range(100):  # a parent chain, never a cycle; bounded anyway
        if not wanted:
            break
        found = dml.rows_by_id(cursor, _RUNS, ("cancel_requested", "parent_run_id"), wanted)
        for run_id in wanted:
            flag, parent = found.get(run_id, (False, None))
            known[run_id] = (bool(flag), parent)
        wanted = [
            parent
            for flag, parent in list(known.values())
            if not flag and parent is not None and parent not in known
        ]
        wanted = list(dict.fromkeys(wanted))
    flags: dict[uuid.UUID, bool] = {}
    for run_id in run_ids:
        current: uuid.UUID | None = run_id
        flag = False
        for _ in range(100):
            if current is None or current not in known:
                break
            flag, current = known[current]
            if flag:
                break
        flags[run_id] = flag
    return flags


def _raise_failed_start(started: asyncio.Future[Any] | None) -> None:
    """The deferred start of a step was queued before its finish, so it has its outcome by the time
    the finish has one; its failure is the one to report (the finish then failed too, or wrote
    nothing, for want of the step's row)."""
    if started is not None and started.done() and not started.cancelled():
        error = started.exception()
        if error is not None:
            raise error


def _values(record: Any) -> dict[str, Any]:
    values = dict(record.__dict__)
    status = values.get("status")
    if isinstance(status, enum.Enum):
        values["status"] = status.value
    return values


# step_metadata keys that repeat a column of the step row: stored once, in the column (docs/performance.md,
# "What a stored run weighs"). The metadata keeps a code per key taken out and gets them back on read.
_FROM_COLUMNS = {
    "t": "tokens_used",
    "c": "cost_estimate",
    "e": "execution_time_ms",
    "y": "step_type",
    "r": "run_id",
    "k": "step_key",
    "o": "step_order",
    "l": "llm_request_id",
}
_MARK = "~columns"


def _column_values(step: dict[str, Any]) -> dict[str, Any]:
    """What each metadata key would be, from the step's columns (as the runner writes it)."""
    request = step.get("llm_request_id")
    return {
        "tokens_used": step.get("tokens_used"),
        "cost_estimate": step.get("cost_estimate"),
        "execution_time_ms": step.get("execution_time_ms"),
        "step_type": step.get("step_type"),
        "run_id": str(step["flow_run_id"]) if step.get("flow_run_id") is not None else None,
        "step_key": step.get("step_key"),
        "step_order": step.get("step_order"),
        "llm_request_id": str(request) if request is not None else None,
    }


def _slim_metadata(metadata: Any, columns: dict[str, Any]) -> Any:
    """``metadata`` without the keys whose value its step's columns hold already."""
    if not isinstance(metadata, dict) or _MARK in metadata:
        return metadata
    taken = "".join(
        code
        for code, key in _FROM_COLUMNS.items()
        if key in metadata and type(metadata[key]) is type(columns[key]) and metadata[key] == columns[key]
    )
    if not taken:
        return metadata
    slim = {k: v for k, v in metadata.items() if k not in {_FROM_COLUMNS[c] for c in taken}}
    slim[_MARK] = taken
    return slim


def _full_metadata(step: StepRecord) -> StepRecord:
    metadata = step.step_metadata
    if isinstance(metadata, dict) and isinstance(metadata.get(_MARK), str):
        columns = _column_values(step.__dict__)
        restored = {k: v for k, v in metadata.items() if k != _MARK}
        restored.update(
            {_FROM_COLUMNS[c]: columns[_FROM_COLUMNS[c]] for c in metadata[_MARK] if c in _FROM_COLUMNS}
        )
        step.step_metadata = restored
    return step


def _conditions(where: RunFilter) -> list[Any]:
    """``where`` as SQL conditions (``RunFilter`` says what each field means)."""
    run = FlowRunModel
    found: list[Any] = []
    for column, value in (
        (run.flow_name, where.flow_name),
        (run.user_id, where.user_id),
        (run.parent_run_id, where.parent_run_id),
        (run.batch_id, where.batch_id),
        (run.batch_line, where.batch_line),
    ):
        if value is not None:
            found.append(column == value)
    if where.created_from is not None:
        found.append(run.created_at >= where.created_from)
    if where.created_until is not None:
        found.append(run.created_at < where.created_until)
    if where.status is None:
        return found
    running, crashed = RunStatus.RUNNING.value, RunStatus.CRASHED.value
    if where.stale_before is None or where.status not in (running, crashed):
        found.append(run.status == where.status)
        return found
    stale = or_(run.last_heartbeat.is_(None), run.last_heartbeat < where.stale_before)
    if where.status == running:
        found.append(and_(run.status == running, ~stale))
    else:
        found.append(or_(run.status == crashed, and_(run.status == running, stale)))
    return found


class SqlStore(RunStore):
    """Runs, steps and LLM requests in a SQL database."""

    def __init__(self, url: str):
        self.url = url
        self.engine = create_sql_engine(url)
        try:
            ensure_schema(self.engine)
        except DBAPIError as exc:
            self.engine.dispose()
            raise ConfigurationError(f"cannot open database {display_url(url)}: {exc.orig}") from None
        except BaseException:
            self.engine.dispose()
            raise
        in_memory = self.engine.dialect.name == "sqlite" and sqlite_path(self.engine.url) is None
        # an in-memory SQLite database is one connection: reads and writes take turns on it
        self._lock: Any = threading.RLock() if in_memory else contextlib.nullcontext()
        # a SQLite file: writes that need not wait are done by their caller (see Writer)
        sqlite_file = self.engine.dialect.name == "sqlite" and not in_memory
        self._writer = Writer(self.engine, self._lock, inline=sqlite_file)
        # deferred writes of running steps' starts, by step id, until their finish_step looks at them
        self._starts: dict[uuid.UUID, asyncio.Future[Any]] = {}
        # columns of running steps that their finish_step's metadata may repeat (see _slim_metadata)
        self._step_columns: dict[uuid.UUID, tuple[uuid.UUID, str, int, str]] = {}

    def __repr__(self) -> str:
        return f"SqlStore({display_url(self.url)!r})"

    # -- writes -----------------------------------------------------------------------------
    async def create_run(self, run: RunRecord) -> None:
        values = {**_values(run), "cancel_requested": False}
        await self._writer.submit(Operation(("run {}", run.id), [("insert", _RUNS, values)]))

    async def update_run(self, run_id: uuid.UUID, changes: RunChanges) -> None:
        if not changes:
            return
        values = _check(_RUN_COLUMNS, changes, "a run")
        await self._writer.submit(Operation(("run {}", run_id), [("update", _RUNS, run_id, values)]))

    async def start_step(self, step: StepRecord, run_changes: RunChanges) -> None:
        """A running step's row is deferred (``Writer.defer``): committed while the step awaits
        anything, or together with its finish; a failure to store it is raised by ``finish_step``.
        A step stored already finished (rejected inputs) is written and awaited here."""
        actions: list[tuple[Any, ...]] = [("insert", _STEPS, _values(step))]
        if run_changes:
            actions.append(("update", _RUNS, step.flow_run_id, _check(_RUN_COLUMNS, run_changes, "a run")))
        operation = Operation(("step '{}' of run {}", step.step_key, step.flow_run_id), actions)
        self._step_columns[step.id] = (step.flow_run_id, step.step_key, step.step_order, step.step_type)
        if step.status != RunStatus.RUNNING.value:
            self._step_columns.pop(step.id, None)
            await self._writer.submit(operation)
            return
        self._starts[step.id] = self._writer.defer(operation)

    async def finish_step(
        self, step_id: uuid.UUID, step_changes: StepChanges, run_id: uuid.UUID, run_changes: RunChanges
    ) -> bool:
        """Update the step and its run; True when a cancel of the run was requested meanwhile."""
        actions: list[tuple[Any, ...]] = []
        known = self._step_columns.pop(step_id, None)
        if known is not None and step_changes.get("step_metadata") is not None:
            flow_run_id, step_key, step_order, step_type = known
            columns = _column_values(
                {
                    **step_changes,
                    "flow_run_id": flow_run_id,
                    "step_key": step_key,
                    "step_order": step_order,
                    "step_type": step_type,
                }
            )
            step_changes = {
                **step_changes,
                "step_metadata": _slim_metadata(step_changes["step_metadata"], columns),
            }
        if step_changes:
            actions.append(("update", _STEPS, step_id, _check(_STEP_COLUMNS, step_changes, "a step")))
        if run_changes:
            actions.append(("update", _RUNS, run_id, _check(_RUN_COLUMNS, run_changes, "a run")))
        actions.append(("lookup", cancel_flag, cancel_flags, run_id))
        started = self._starts.pop(step_id, None)
        try:
            cancel = await self._writer.submit(Operation(("step {} of run {}", step_id, run_id), actions))
        except Exception:
            _raise_failed_start(started)
            raise
        _raise_failed_start(started)
        return bool(cancel)

    async def record_llm_request(self, request: LLMRequestRecord) -> None:
        what = ("LLM request {} ({})", request.id, request.model)
        await self._writer.submit(Operation(what, [("insert", _REQUESTS, _values(request))]))

    records_in_flight = True

    async def finish_llm_request(self, request: LLMRequestRecord) -> None:
        what = ("LLM request {} ({})", request.id, request.model)
        values = _values(request)
        values.pop("id")
        await self._writer.submit(Operation(what, [("update", _REQUESTS, request.id, values)]))

    # -- durable execution -------------------------------------------------------------------
    async def heartbeat(self, run_id: uuid.UUID, at: datetime) -> bool:
        actions = [
            ("update", _RUNS, run_id, {"last_heartbeat": at}),
            ("lookup", cancel_flag, cancel_flags, run_id),
        ]
        return bool(await self._writer.submit(Operation(("heartbeat of run {}", run_id), actions)))

    async def prepare_resume(self, run_id: uuid.UUID, run_changes: RunChanges) -> None:
        changes = {**_check(_RUN_COLUMNS, run_changes, "a run"), "cancel_requested": False}
        actions = [
            ("call", delete_unfinished_steps, run_id),
            ("call", interrupt_in_flight, run_id),
            ("update", _RUNS, run_id, changes),
        ]
        await self._writer.submit(Operation(("resumed run {}", run_id), actions))

    async def request_cancel(self, run_id: uuid.UUID) -> str:
        operation = Operation(
            ("cancel request of run {}", run_id), [("call", request_cancel, run_id, utcnow())]
        )
        return str(await self._writer.submit(operation))

    async def mark_crashed(self, stale_before: datetime, run_id: uuid.UUID | None = None) -> list[uuid.UUID]:
        operation = Operation("crashed runs", [("call", mark_crashed, stale_before, run_id)])
        return list(await self._writer.submit(operation))

    async def claim_run(self, run_id: uuid.UUID, owner: str, stale_before: datetime) -> bool:
        action = ("call", claim_run, run_id, owner, stale_before, utcnow())
        operation = Operation(("claim of run {} by {}", run_id, owner), [action])
        return bool(await self._writer.submit(operation))

    async def claim_ended_run(self, run_id: uuid.UUID, owner: str) -> bool:
        action = ("call", claim_ended_run, run_id, owner, utcnow())
        operation = Operation(("claim of run {} by {}", run_id, owner), [action])
        return bool(await self._writer.submit(operation))

    # -- retention ----------------------------------------------------------------------------
    def prune_runs(
        self,
        before: datetime,
        *,
        statuses: Sequence[str] | None = None,
        flow_name: str | None = None,
        dry_run: bool = False,
        batch_size: int = PRUNE_BATCH,
        on_batch: Callable[[list[uuid.UUID]], None] | None = None,
    ) -> PruneResult:
        """See ``RunStore.prune_runs``; batches of short transactions on a connection of its own."""
        from .retention import prune

        try:
            return prune(
                self.engine,
                self._lock,
                before,
                statuses=statuses,
                flow_name=flow_name,
                dry_run=dry_run,
                batch_size=batch_size,
                on_batch=on_batch,
            )
        except SQLAlchemyError as exc:
            cause = getattr(exc, "orig", None) or exc
            raise StorageError(
                f"pruning {display_url(self.url)} failed: {type(cause).__name__}: {cause}"
            ) from exc

    # -- the response cache (cache.py) -------------------------------------------------------
    has_cache = True

    async def cache_get(self, key: str, now: datetime) -> CacheEntry | None:
        from . import cache

        entry: CacheEntry | None = await asyncio.to_thread(
            self._guarded, "reading the cache", cache.cache_read, key, now
        )
        if entry is not None:
            await self._writer.submit(Operation("a cache hit", [("call", cache.count_hit, key, now)]))
            entry.hits += 1
            entry.last_hit_at = now
        return entry

    async def cache_put(self, entry: CacheEntry) -> None:
        from . import cache

        values = entry.model_dump()
        await self._writer.submit(Operation("a cached answer", [("call", cache.put_entry, values)]))

    def cache_stats(self) -> list[CacheModelStats]:
        from . import cache

        result: list[CacheModelStats] = self._guarded("reading the cache", cache.cache_stats)
        return result

    def cache_clear(self, *, model: str | None = None, older_than: datetime | None = None) -> int:
        from . import cache

        count: int = self._guarded("clearing the cache", cache.cache_clear, model, older_than)
        return count

    def _guarded(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(self.engine, self._lock, *args)
        except SQLAlchemyError as exc:
            cause = getattr(exc, "orig", None) or exc
            raise StorageError(
                f"{what} of {display_url(self.url)} failed: {type(cause).__name__}: {cause}"
            ) from exc

    # -- reads ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _session(self) -> Iterator[Session]:
        try:
            with self._lock, Session(self.engine) as session:
                yield session
        except SQLAlchemyError as exc:
            cause = getattr(exc, "orig", None) or exc
            raise StorageError(
                f"reading {display_url(self.url)} failed: {type(cause).__name__}: {cause}"
            ) from exc

    def get_run(self, run_id: uuid.UUID) -> RunRecord | None:
        with self._session() as session:
            model = FlowRunRepo(session).by_id(run_id)
            return RunRecord.model_validate(model, from_attributes=True) if model is not None else None

    def list_runs(
        self,
        *,
        flow_name: str | None = None,
        status: str | None = None,
        user_id: uuid.UUID | None = None,
        parent_run_id: uuid.UUID | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[RunRecord]:
        with self._session() as session:
            models = FlowRunRepo(session).query(
                flow_name=flow_name,
                status=status,
                user_id=user_id,
                parent_run_id=parent_run_id,
                limit=limit,
                offset=offset,
            )
            return [RunRecord.model_validate(m, from_attributes=True) for m in models]

    def find_runs(self, where: RunFilter, *, limit: int = 50, offset: int = 0) -> list[RunRecord]:
        """One Core query; rows become records unvalidated (the column types made them already), as a
        page of 50 large runs otherwise spends most of its time in validation."""
        columns = [_RUNS.c[name] for name in RunRecord.model_fields]
        stmt = select(*columns).where(*_conditions(where))
        stmt = stmt.order_by(desc(_RUNS.c.created_at), desc(_RUNS.c.id)).limit(limit).offset(offset)
        with self._session() as session:
            rows = session.execute(stmt).mappings().all()
        return [RunRecord.model_construct(**row) for row in rows]

    def run_totals(self, where: RunFilter) -> RunTotals:
        run = FlowRunModel
        stmt = select(
            func.count(),
            func.coalesce(func.sum(run.total_tokens), 0),
            func.coalesce(func.sum(run.total_cost), 0.0),
            func.coalesce(func.sum(run.unpriced_calls), 0),
            func.coalesce(func.sum(run.execution_time_ms), 0),
        ).where(*_conditions(where))
        with self._session() as session:
            count, tokens, cost, unpriced, ms = session.execute(stmt).one()
        return RunTotals(int(count), int(tokens), float(cost), int(unpriced), int(ms or 0))

    def list_steps(self, run_id: uuid.UUID) -> list[StepRecord]:
        with self._session() as session:
            models = FlowStepRunRepo(session).by_flow_run_id(run_id)
            return [_full_metadata(StepRecord.model_validate(m, from_attributes=True)) for m in models]

    def list_llm_requests(
        self, *, flow_run_id: uuid.UUID | None = None, step_run_id: uuid.UUID | None = None
    ) -> list[LLMRequestRecord]:
        with self._session() as session:
            models = LLMRequestRepo(session).find(flow_run_id=flow_run_id, step_run_id=step_run_id)
            return [LLMRequestRecord.model_validate(m, from_attributes=True) for m in models]

    def list_orphaned_runs(
        self,
        executor: str,
        stale_before: datetime,
        pending_before: datetime | None = None,
        limit: int = 100,
    ) -> list[RunRecord]:
        """Two range scans: ``(status, last_heartbeat)`` read backwards from ``stale_before``, and
        pending runs by ``created_at``; the other conditions only filter the rows those find."""
        from sqlalchemy import select

        from .models import FlowRunModel as Run

        def orphans(status: str) -> Any:
            return select(Run).where(
                Run.status == status,
                Run.execution_mode == "background",
                Run.parent_run_id.is_(None),
                Run.flow_metadata[("background", "executor")].as_string() == executor,
            )

        running = orphans(RunStatus.RUNNING.value).where(Run.last_heartbeat < stale_before)
        queries = [running.order_by(Run.last_heartbeat.desc()).limit(limit)]
        if pending_before is not None:
            pending = orphans(RunStatus.PENDING.value).where(Run.created_at < pending_before)
            queries.append(pending.order_by(Run.created_at).limit(limit))
        with self._session() as session:
            return [
                RunRecord.model_validate(m, from_attributes=True)
                for query in queries
                for m in session.execute(query).scalars()
            ]

    def run_ids_with_prefix(self, prefix: str, limit: int = 2) -> list[uuid.UUID]:
        with self._session() as session:
            return FlowRunRepo(session).ids_with_prefix(prefix, limit)

    def close(self) -> None:
        """Write what is queued, stop the writer thread, close the connections."""
        self._writer.close()
        self.engine.dispose()
