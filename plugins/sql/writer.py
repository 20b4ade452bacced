"""The store's writer thread: writes leave the event loop, and whatever is queued commits together.

Each ``await submit(...)`` puts an operation (one or more statements that belong together, such as
"insert this step and update its run") and an asyncio future on a queue and waits. The thread takes
everything queued at that moment and applies it in ONE short transaction (group commit): a single
flow pays one commit per write, 500 concurrent flows share commits instead of queueing for 500 of
them. Futures are resolved on their own loop (``call_soon_threadsafe``, once per loop per batch).

A batch is applied with a handful of statements rather than a few per operation: its rows are
grouped by table and shape (all inserts first, parents before children; then the updates, each row's
in submission order) and each group is one statement (a multi-row ``INSERT``, an ``UPDATE ... FROM
(VALUES ...)``; other dialects: one ``executemany``); "lookup" actions (the cancel flag) are answered
after the writes with one query for the whole batch. Every statement the thread
runs releases the GIL and then waits to get it back from a busy event loop (about a millisecond under
load), so this is what keeps the writer keeping up with hundreds of concurrent flows. A batch with a
"call" action, or one that fails, is applied one statement at a time instead.

Nothing is lost silently: if one operation of a batch fails, the others are applied again without
it, and its caller alone gets the exception. ``close()`` writes what is queued, then
stops the thread; it also runs at interpreter exit.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import queue
import threading
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.engine import Engine

from flow_engine.errors import FlowEngineError

from .dml import DmlCache

MAX_BATCH = 500  # operations per transaction: keeps each transaction (and its lock) short

# one step of an operation: ("insert", table, values), ("update", table, row_id, changes) - which fails
# if the row does not exist - ("call", fn, *args) with fn(cursor, dml, *args) -> result for the rest,
# or ("lookup", fn, batch_fn, arg): a read after the writes, fn(cursor, dml, arg) -> result, answered
# for a whole batch at once by batch_fn(cursor, dml, [arg, ...]) -> {arg: result}.
# The operation's result (what ``submit`` returns) is the result of its last action.
Action = tuple[Any, ...]
_GROUPABLE = frozenset({"insert", "update", "lookup"})


class StorageError(FlowEngineError):
    """The database refused or failed a read or write; the record named in the message was not stored."""


class Operation:
    """Statements applied together. ``what`` names the record for error messages: a string, or a format
    string and its arguments (formatted only if the write fails: ``str(uuid)`` is not free)."""

    __slots__ = ("actions", "what")

    def __init__(self, what: str | tuple[Any, ...], actions: Sequence[Action]):
        self.what = what
        self.actions = actions

    def describe(self) -> str:
        return self.what if isinstance(self.what, str) else self.what[0].format(*self.what[1:])


class _MissingRow(LookupError):
    pass


class _Failed(Exception):
    """A transaction failed: in the operation at ``position`` of the batch, or (None) in the transaction."""

    def __init__(self, position: int | None, error: BaseException):
        super().__init__(position, error)
        self.position = position
        self.error = error


Outcome = tuple[Any, BaseException | None]  # (result, error)


def _resolve(items: list[tuple[asyncio.Future[Any], Outcome]]) -> None:
    for future, (result, error) in items:
        if future.done():  # the caller was cancelled; the write happened anyway
            continue
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)


class Writer:
    """One thread and one connection that perform every write of a store, in submission order."""

    def __init__(self, engine: Engine, lock: Any):
        self._engine = engine
        self._lock = lock  # shared with reads for an in-memory SQLite database, else a no-op
        self._begin = "BEGIN IMMEDIATE" if engine.dialect.name == "sqlite" else None
        self._dml = DmlCache(engine.dialect)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._conn: Any = None  # the pool's DBAPI connection, held by this thread
        self._cursor: Any = None
        self._closed = False
        self._submit_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="flow-engine-sql-writer", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    # -- caller side (event loop) -----------------------------------------------------------
    async def submit(self, operation: Operation) -> Any:
        """Queue ``operation``; return its result once it is committed, or raise why it was not."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._submit_lock:
            if self._closed or not self._thread.is_alive():
                raise StorageError(f"could not store {operation.describe()}: the store is closed")
            self._queue.put((operation, future, loop))
        return await future

    def close(self, timeout: float | None = 60.0) -> None:
        with self._submit_lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        atexit.unregister(self.close)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    # -- writer thread ----------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                batch = [self._queue.get()]
                while len(batch) < MAX_BATCH:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                items = [item for item in batch if item is not None]
                if items:
                    self._apply_safely(items)
                if len(items) != len(batch):
                    # the stop marker; anything after it in this batch was handled above
                    while True:
                        try:
                            rest = self._queue.get_nowait()
                        except queue.Empty:
                            break
                        if rest is not None:
                            self._apply_safely([rest])
                    return
        finally:
            self._drop_connection(invalidate=False)

    def _apply_safely(
        self, items: list[tuple[Operation, asyncio.Future[Any], asyncio.AbstractEventLoop]]
    ) -> None:
        try:
            self._apply(items)
        except Exception as exc:  # a bug here must not leave callers waiting forever
            for operation, future, loop in items:
                failed: list[tuple[asyncio.Future[Any], Outcome]] = [
                    (future, (None, self._error(operation, exc)))
                ]
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(_resolve, failed)

    def _apply(self, items: list[tuple[Operation, asyncio.Future[Any], asyncio.AbstractEventLoop]]) -> None:
        outcomes = self._write([operation for operation, _, _ in items])
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Outcome]]] = {}
        for (_, future, loop), outcome in zip(items, outcomes, strict=True):
            by_loop.setdefault(loop, []).append((future, outcome))
        for loop, results in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
                loop.call_soon_threadsafe(_resolve, results)

    def _write(self, operations: list[Operation]) -> list[Outcome]:
        """Apply ``operations`` in one transaction. If one of them fails, it alone gets the error and the
        rest are applied again without it; a failure of the transaction itself (BEGIN, COMMIT, the
        connection) fails them all, after one retry on a new connection if the old one was lost."""
        outcomes: list[Outcome | None] = [None] * len(operations)
        pending = list(range(len(operations)))
        retried = False
        with self._lock:
            while pending:
                try:
                    results = self._transaction([operations[i] for i in pending])
                except _Failed as failed:
                    if self._recover() and not retried:
                        retried = True
                        continue
                    culprits = pending if failed.position is None else [pending[failed.position]]
                    for i in culprits:
                        outcomes[i] = (None, self._error(operations[i], failed.error))
                    pending = [i for i in pending if i not in culprits]
                    continue
                for i, result in zip(pending, results, strict=True):
                    outcomes[i] = (result, None)
                pending = []
        return [outcome if outcome is not None else (None, None) for outcome in outcomes]

    def _start(self) -> Any:
        try:
            if self._conn is None:
                self._conn = self._engine.raw_connection()
                self._cursor = self._conn.cursor()
                self._dml.set_max_params(self._conn.driver_connection)
            cursor = self._cursor
            if self._begin:
                cursor.execute(self._begin)
        except Exception as exc:
            raise _Failed(None, exc) from exc
        return cursor

    def _transaction(self, operations: list[Operation]) -> list[Any]:
        cursor = self._start()
        dml = self._dml
        if len(operations) > 1 and all(a[0] in _GROUPABLE for op in operations for a in op.actions):
            try:
                grouped = self._perform_grouped(cursor, dml, operations)
            except Exception:
                # something in the batch fails: start over one statement at a time, which finds out
                # which operation it was (and lets the others through)
                try:
                    self._conn.rollback()
                except Exception as exc:
                    raise _Failed(None, exc) from exc
                cursor = self._start()
            else:
                try:
                    self._conn.commit()
                except Exception as exc:
                    raise _Failed(None, exc) from exc
                return grouped
        results: list[Any] = []
        for position, operation in enumerate(operations):
            try:
                results.append(self._perform(cursor, dml, operation))
            except Exception as exc:
                raise _Failed(position, exc) from exc
        try:
            self._conn.commit()
        except Exception as exc:
            raise _Failed(None, exc) from exc
        return results

    @staticmethod
    def _perform(cursor: Any, dml: DmlCache, operation: Operation) -> Any:
        result = None
        for action in operation.actions:
            kind = action[0]
            if kind == "insert":
                cursor.execute(*dml.insert(action[1], action[2]))
                result = None
            elif kind == "update":
                cursor.execute(*dml.update(action[1], action[2], action[3]))
                if cursor.rowcount == 0:
                    raise _MissingRow(f"no {_row_name(action[1])} with id {action[2]}")
                result = None
            elif kind == "lookup":
                result = action[1](cursor, dml, action[3])
            else:
                result = action[1](cursor, dml, *action[2:])
        return result

    @staticmethod
    def _perform_grouped(cursor: Any, dml: DmlCache, operations: list[Operation]) -> list[Any]:
        """Apply a batch of inserts, updates and lookups with one statement per table and shape.

        Inserts go first, parent tables before child tables (foreign keys); then the updates in groups:
        an update joins the first group of its shape after the last group that touches its row, so
        each row's updates keep their order and no statement touches a row twice; then the lookups,
        one ``batch_fn`` call each. Raises on any failure (the caller then applies the batch one
        statement at a time, which names the operation at fault).
        """
        inserts: dict[tuple[str, tuple[str, ...]], tuple[Table, list[dict[str, Any]]]] = {}
        groups: list[tuple[tuple[str, tuple[str, ...]], Table, list[tuple[Any, dict[str, Any]]]]] = []
        last_group: dict[tuple[str, Any], int] = {}
        lookups: list[tuple[int, Any, Any]] = []
        for index, operation in enumerate(operations):
            last = len(operation.actions) - 1
            for position, action in enumerate(operation.actions):
                kind = action[0]
                if kind == "insert":
                    table, values = action[1], action[2]
                    inserts.setdefault((table.name, tuple(values)), (table, []))[1].append(values)
                elif kind == "update":
                    table, row_id, changes = action[1], action[2], action[3]
                    shape = (table.name, tuple(changes))
                    row = (table.name, row_id)
                    start = last_group.get(row, -1) + 1
                    for g in range(start, len(groups)):
                        if groups[g][0] == shape:
                            break
                    else:
                        groups.append((shape, table, []))
                        g = len(groups) - 1
                    groups[g][2].append((row_id, changes))
                    last_group[row] = g
                elif position == last:  # a lookup whose answer is the operation's result
                    lookups.append((index, action[2], action[3]))
        if inserts:
            tables = next(iter(inserts.values()))[0].metadata.sorted_tables  # parents first
            order = {t.name: i for i, t in enumerate(tables)}
            for (_, columns), (table, rows) in sorted(
                inserts.items(), key=lambda kv: order.get(kv[0][0], 99)
            ):
                if dml.multi_row:
                    for start, end in dml.chunks(len(rows), len(columns)):
                        cursor.execute(*dml.insert_rows(table, rows[start:end]))
                else:
                    cursor.executemany(*dml.insert_params(table, rows))
        for _, table, items in groups:
            if dml.update_from:
                found = 0
                for start, end in dml.chunks(len(items), len(items[0][1]) + 1):
                    cursor.execute(*dml.update_rows(table, items[start:end]))
                    found += cursor.rowcount
            else:
                cursor.executemany(*dml.update_params(table, items))
                found = cursor.rowcount
            if found != len(items):
                raise _MissingRow(f"{len(items) - found} {_row_name(table)} row(s) of a batch not found")
        results: list[Any] = [None] * len(operations)
        if lookups:
            wanted: dict[Any, list[Any]] = {}
            for _, batch_fn, arg in lookups:
                wanted.setdefault(batch_fn, []).append(arg)
            answers = {fn: fn(cursor, dml, list(dict.fromkeys(args))) for fn, args in wanted.items()}
            for index, batch_fn, arg in lookups:
                results[index] = answers[batch_fn][arg]
        return results

    def _recover(self) -> bool:
        """Roll back after a failure; returns True if the connection had to be dropped."""
        if self._conn is None:
            return True
        try:
            self._conn.rollback()
            return False
        except Exception:
            self._drop_connection(invalidate=True)
            return True

    def _drop_connection(self, *, invalidate: bool) -> None:
        conn, self._conn = self._conn, None
        cursor, self._cursor = self._cursor, None
        if conn is None:
            return
        with contextlib.suppress(Exception):
            cursor.close()
        with contextlib.suppress(Exception):
            if invalidate:
                conn.invalidate()
            else:
                conn.rollback()
                conn.close()

    @staticmethod
    def _error(operation: Operation, exc: BaseException) -> BaseException:
        if isinstance(exc, FlowEngineError):  # raised on purpose by a "call" action: the caller's answer
            return exc
        cause = getattr(exc, "orig", None) or exc
        error = StorageError(f"could not store {operation.describe()}: {type(cause).__name__}: {cause}")
        error.__cause__ = exc
        return error


def _row_name(table: Table) -> str:
    return {"flow_runs": "run", "flow_step_runs": "step", "llm_requests": "LLM request"}.get(
        table.name, "row"
    )
