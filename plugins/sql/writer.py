"""The store's writer thread: writes leave the event loop, and whatever is queued commits together.

Each ``await submit(...)`` puts an operation (one or more statements that belong together, such as
"insert this step and update its run") and an asyncio future on a queue and waits. The thread takes
everything queued at that moment and applies it in ONE short transaction (group commit): a single
flow pays one commit per write, 500 concurrent flows share commits instead of queueing for 500 of
them. Futures are resolved on their own loop (``call_soon_threadsafe``, once per loop per batch).

``defer(...)`` queues an operation without waiting for it: it goes to the thread together with the
next ``submit`` (in order, in the same transaction), or at the end of the current event-loop
iteration if no submit comes first. A step's start is written that way: a step that finishes without
giving the loop a turn (plain Python) costs one hand-off to the thread and one commit, not two; a
step that awaits something has its start row committed while it waits. Every hand-off is a thread
wake-up each way (about 0.1 ms on this kind of machine), as much as the SQL of a small transaction.

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
import sqlite3
import threading
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.engine import Engine

from flow_engine.plugin import FlowEngineError, StorageError

from .dml import DmlCache

MAX_BATCH = 500  # operations per transaction: keeps each transaction (and its lock) short
# SQLite, with writes done by their caller (see Writer): how long a write may wait for another
# process's write lock, and how often the thread checkpoints the WAL (in commits)
SQLITE_LOCK_WAIT_S = 30.0
CHECKPOINT_EVERY = 256
_CHECKPOINT = "checkpoint"  # a queue entry: checkpoint the WAL
RESOLVE_PER_TURN = 10  # waiting tasks woken per event-loop iteration (see _resolve): a woken flow
# runs on to its next await, often through its next step's start and LLM request (0.3-1 ms)
INLINE_AFTER_QUIET_S = 0.05  # inline writes only after this long without a hand-over to the thread

# one step of an operation: ("insert", table, values), ("update", table, row_id, changes) - which fails
# if the row does not exist - ("call", fn, *args) with fn(cursor, dml, *args) -> result for the rest,
# or ("lookup", fn, batch_fn, arg): a read after the writes, fn(cursor, dml, arg) -> result, answered
# for a whole batch at once by batch_fn(cursor, dml, [arg, ...]) -> {arg: result}.
# The operation's result (what ``submit`` returns) is the result of its last action.
Action = tuple[Any, ...]
_GROUPABLE = frozenset({"insert", "update", "lookup"})


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


class _Busy(Exception):
    """SQLite's write lock is held by another connection, and the caller must not wait for it."""


def _is_busy(exc: BaseException) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


class _Failed(Exception):
    """A transaction failed: in the operation at ``position`` of the batch, or (None) in the transaction."""

    def __init__(self, position: int | None, error: BaseException):
        super().__init__(position, error)
        self.position = position
        self.error = error


Outcome = tuple[Any, BaseException | None]  # (result, error)


def _resolve(items: list[tuple[asyncio.Future[Any], Outcome]]) -> None:
    """Give waiting callers their outcomes, on their loop: at most RESOLVE_PER_TURN per loop iteration,
    the rest in the next ones. A batch of 500 commits would otherwise wake 500 tasks in one iteration,
    and everything else on the loop (timers, I/O) would wait for all of them to run."""
    if len(items) > RESOLVE_PER_TURN:
        asyncio.get_running_loop().call_soon(_resolve, items[RESOLVE_PER_TURN:])
        items = items[:RESOLVE_PER_TURN]
    for future, (result, error) in items:
        if future.done():  # the caller was cancelled; the write happened anyway
            continue
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)


Item = tuple[Operation, asyncio.Future[Any], asyncio.AbstractEventLoop]


class Writer:
    """One thread and one connection that perform every write of a store, in submission order.

    With ``inline=True`` (a SQLite file), a write that finds nothing queued for the thread is done
    at once by its caller, on the event loop, if SQLite's write lock can be had without waiting: a
    transaction on a local file (about 0.2 ms, no fsync: WAL with ``synchronous=NORMAL``) costs
    less than the two thread wake-ups of a hand-off. Anything that would wait goes to the thread:
    another process holding the lock, writes already queued (which keeps the order), a second write
    in the same loop iteration, any write within ``INLINE_AFTER_QUIET_S`` of the last hand-over (so
    that concurrent flows share commits in the thread rather than each committing on the loop), and
    WAL checkpoints (which fsync; automatic checkpoints are off on this connection, the thread runs
    one every ``CHECKPOINT_EVERY`` commits).
    """

    def __init__(self, engine: Engine, lock: Any, *, inline: bool = False):
        self._engine = engine
        self._lock = lock  # shared with reads for an in-memory SQLite database, else a no-op
        self._begin = "BEGIN IMMEDIATE" if engine.dialect.name == "sqlite" else None
        self._inline = inline and engine.dialect.name == "sqlite"
        self._conn_lock = threading.Lock()  # whoever uses the connection: the thread or an inline write
        self._in_thread = 0  # operations handed to the thread and not applied yet
        self._turn_taken = False  # an inline write was done in this event-loop iteration
        self._last_hand_over = 0.0  # when writes last went to the thread (time.monotonic())
        self._commits = 0
        self._dml = DmlCache(engine.dialect)
        # PostgreSQL with psycopg 3: a batch is sent in pipeline mode (see _pipelined)
        self._pipeline = self._dml.postgres and engine.dialect.driver == "psycopg"
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._conn: Any = None  # the pool's DBAPI connection, held by this thread
        self._cursor: Any = None
        self._checkpointer: Any = None  # the pool's DBAPI connection that runs WAL checkpoints
        self._closed = False
        self._submit_lock = threading.Lock()
        self._deferred: list[tuple[Operation, asyncio.Future[Any], asyncio.AbstractEventLoop]] = []
        self._thread = threading.Thread(target=self._run, name="flow-engine-sql-writer", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    # -- caller side (event loop) -----------------------------------------------------------
    async def submit(self, operation: Operation) -> Any:
        """Queue ``operation`` (after any deferred ones); return its result once it is committed, or
        raise why it was not."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._submit_lock:
            self._check_open(operation)
            self._deferred.append((operation, future, loop))
            items = self._inline_turn(loop)
            if items is None:
                self._hand_over()
        if items is not None:
            self._write_inline(items, loop)
            await asyncio.sleep(0)  # one inline write per loop iteration (see _inline_turn)
        return await future

    def defer(self, operation: Operation) -> asyncio.Future[Any]:
        """Queue ``operation`` without waiting: it is handed to the thread with the next ``submit``, or
        once the event loop has run what is ready now. The future gives its outcome; whoever defers
        must look at it (an exception nobody retrieves is only logged by asyncio)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._submit_lock:
            self._check_open(operation)
            if not self._deferred:
                loop.call_soon(self._flush_deferred)
            self._deferred.append((operation, future, loop))
        return future

    def _check_open(self, operation: Operation) -> None:
        if self._closed or not self._thread.is_alive():
            raise _closed_error(operation)

    def _hand_over(self, items: list[Item] | None = None, *, busy: bool = True) -> None:
        """Put ``items`` (default: the deferred operations) on the queue as one entry (the thread takes
        them together). ``busy``: handed over because writes are coming in fast, which keeps later
        ones off the inline path for a while. Called under the submit lock."""
        if items is None:
            items, self._deferred = self._deferred, []
        if items:
            self._in_thread += len(items)
            if busy:
                self._last_hand_over = time.monotonic()
            self._queue.put(items)

    def _flush_deferred(self) -> None:
        loop = asyncio.get_running_loop()
        with self._submit_lock:
            items = self._inline_turn(loop) if self._deferred else None
            if items is None:
                self._hand_over()
        if items is not None:
            self._write_inline(items, loop)

    # -- inline writes (SQLite file) -------------------------------------------------------------
    def _inline_turn(self, loop: asyncio.AbstractEventLoop) -> list[Item] | None:
        """The deferred operations, taken to be written by the caller, or None if they must go to the
        thread. Called under the submit lock."""
        if (
            not self._inline
            or self._in_thread
            or self._turn_taken
            or time.monotonic() - self._last_hand_over < INLINE_AFTER_QUIET_S
            or not all(a[0] in _GROUPABLE for op, _, _ in self._deferred for a in op.actions)
        ):
            return None
        self._turn_taken = True
        loop.call_soon(self._end_turn)
        items, self._deferred = self._deferred, []
        return items

    def _end_turn(self) -> None:
        self._turn_taken = False

    def _write_inline(self, items: list[Item], loop: asyncio.AbstractEventLoop) -> None:
        """Apply ``items`` now, on this thread, if the connection and SQLite's lock are free; what
        could not be written without waiting goes to the thread, in order."""
        outcomes: list[Outcome | None] = [None] * len(items)
        if self._conn_lock.acquire(blocking=False):
            try:
                outcomes = self._write([operation for operation, _, _ in items], nowait=True)
            except Exception as exc:  # a bug here must not leave callers waiting forever
                outcomes = [(None, self._error(operation, exc)) for operation, _, _ in items]
            finally:
                self._conn_lock.release()
        done = [(item, outcome) for item, outcome in zip(items, outcomes, strict=True) if outcome is not None]
        left = [item for item, outcome in zip(items, outcomes, strict=True) if outcome is None]
        if left:
            with self._submit_lock:
                if self._closed:  # closed meanwhile, by another thread: the thread takes no more
                    done += [(item, (None, _closed_error(item[0]))) for item in left]
                else:  # the connection was busy (a checkpoint) or SQLite's lock taken: not load
                    self._hand_over(left, busy=False)
        for other, results in _by_loop(done).items():
            if other is loop:
                _resolve(results)
            else:
                with contextlib.suppress(RuntimeError):
                    other.call_soon_threadsafe(_resolve, results)

    def close(self, timeout: float | None = 60.0) -> None:
        with self._submit_lock:
            if self._closed:
                return
            self._closed = True
            self._hand_over()
            self._queue.put(None)
        atexit.unregister(self.close)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    # -- writer thread ----------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                # queue entries are lists of operations handed over together, or None: stop
                entry = self._queue.get()
                items: list[Item] = []
                checkpoint = stop = False
                while True:
                    if entry is None:
                        stop = True
                    elif entry is _CHECKPOINT:
                        checkpoint = True
                    else:
                        items.extend(entry)
                    if len(items) >= MAX_BATCH or stop:
                        break
                    try:
                        entry = self._queue.get_nowait()
                    except queue.Empty:
                        break
                for start in range(0, len(items), MAX_BATCH):
                    with self._conn_lock:
                        self._apply_safely(items[start : start + MAX_BATCH])
                    with self._submit_lock:
                        self._in_thread -= len(items[start : start + MAX_BATCH])
                if checkpoint:  # not under the connection lock: inline writes go on meanwhile
                    self._checkpoint()
                if stop:
                    # close() puts the marker last, under the submit lock: nothing can follow it
                    return
        finally:
            self._drop_connection(invalidate=False)
            if self._checkpointer is not None:
                with contextlib.suppress(Exception):
                    self._checkpointer.close()

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

    def _apply(self, items: list[Item]) -> None:
        outcomes = self._write([operation for operation, _, _ in items])
        done = [(item, outcome or (None, None)) for item, outcome in zip(items, outcomes, strict=True)]
        for loop, results in _by_loop(done).items():
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
                loop.call_soon_threadsafe(_resolve, results)

    def _write(self, operations: list[Operation], *, nowait: bool = False) -> list[Outcome | None]:
        """Apply ``operations`` in one transaction. If one of them fails, it alone gets the error and the
        rest are applied again without it; a failure of the transaction itself (BEGIN, COMMIT, the
        connection) fails them all, after one retry on a new connection if the old one was lost.
        With ``nowait``, operations that could not start without waiting for SQLite's lock are left
        as None (the caller hands them to the thread)."""
        outcomes: list[Outcome | None] = [None] * len(operations)
        pending = list(range(len(operations)))
        retried = False
        with self._lock:
            while pending:
                try:
                    results = self._transaction([operations[i] for i in pending], nowait)
                except _Busy:
                    break
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
                self._commits += 1
                if self._inline and self._commits % CHECKPOINT_EVERY == 0:
                    self._queue.put(_CHECKPOINT)
        return outcomes

    def _start(self, nowait: bool = False) -> Any:
        try:
            if self._conn is None:
                self._conn = self._engine.raw_connection()
                self._cursor = self._conn.cursor()
                self._dml.set_max_params(self._conn.driver_connection)
                if self._inline:  # waiting for the lock is _begin_inline's; checkpoints the thread's
                    self._cursor.execute("PRAGMA busy_timeout = 0")
                    self._cursor.execute("PRAGMA wal_autocheckpoint = 0")
            cursor = self._cursor
            if self._inline:
                self._begin_inline(cursor, nowait)
            elif self._begin:
                cursor.execute(self._begin)
        except _Busy:
            raise
        except Exception as exc:
            raise _Failed(None, exc) from exc
        return cursor

    def _begin_inline(self, cursor: Any, nowait: bool) -> None:
        """``BEGIN IMMEDIATE`` on a connection without a busy timeout: raise _Busy at once (nowait), or
        retry with a growing pause for up to SQLITE_LOCK_WAIT_S, as SQLite's busy handler would."""
        deadline = time.monotonic() + SQLITE_LOCK_WAIT_S
        pause = 0.001
        while True:
            try:
                cursor.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise
                if nowait:
                    raise _Busy() from exc
                if time.monotonic() > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

    def _checkpoint(self) -> None:
        """Copy the WAL into the database file (PASSIVE: never waits for readers or writers).

        First on a connection of its own while writes go on: copying and fsyncing takes tens of
        milliseconds, and every inline write would otherwise wait that long (on the thread, which
        held the connection). Frames written meanwhile are then copied with the writing connection
        held, a short second pass: only a WAL copied to its end is rewound by the next write, and a
        WAL never caught up would grow without end."""
        with contextlib.suppress(Exception):
            if self._checkpointer is None:
                self._checkpointer = self._engine.raw_connection()
            cursor = self._checkpointer.cursor()
            try:
                cursor.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                with self._conn_lock:  # what was written meanwhile (its count is not known before)
                    cursor.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            finally:
                cursor.close()

    def _transaction(self, operations: list[Operation], nowait: bool = False) -> list[Any]:
        cursor = self._start(nowait)
        dml = self._dml
        if self._pipeline and all(a[0] in _GROUPABLE for op in operations for a in op.actions):
            try:
                return self._pipelined(cursor, dml, operations)
            except Exception:
                # a statement failed (or the connection): start over one statement at a time, which
                # names the operation at fault, or fails the transaction if the connection is gone
                try:
                    self._conn.rollback()
                except Exception as exc:
                    raise _Failed(None, exc) from exc
                cursor = self._start(nowait)
        elif len(operations) > 1 and all(a[0] in _GROUPABLE for op in operations for a in op.actions):
            try:
                grouped = self._perform_grouped(cursor, dml, operations)
            except Exception:
                # something in the batch fails: start over one statement at a time, which finds out
                # which operation it was (and lets the others through)
                try:
                    self._conn.rollback()
                except Exception as exc:
                    raise _Failed(None, exc) from exc
                cursor = self._start(nowait)
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

    def _pipelined(self, cursor: Any, dml: DmlCache, operations: list[Operation]) -> list[Any]:
        """PostgreSQL: the batch's statements and its COMMIT sent in psycopg's pipeline mode, so a step
        boundary (insert the step, update step and run, read the cancel flag, commit) costs two round
        trips (one answered by the cancel-flag read, one by the commit) instead of one per statement.
        Rows an UPDATE must find are counted once the answers are in (a cursor per UPDATE)."""
        checks: list[tuple[Any, int, Table]] = []
        with self._conn.driver_connection.pipeline():
            results = self._perform_grouped(
                cursor, dml, operations, checks=checks, new_cursor=self._conn.cursor
            )
            self._conn.commit()
        for counted, expected, table in checks:  # after the commit's sync every answer is in
            if counted.rowcount != expected:
                raise _MissingRow(
                    f"{expected - counted.rowcount} {_row_name(table)} row(s) of a batch not found"
                )
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
    def _perform_grouped(
        cursor: Any,
        dml: DmlCache,
        operations: list[Operation],
        *,
        checks: list[tuple[Any, int, Table]] | None = None,
        new_cursor: Any = None,
    ) -> list[Any]:
        """Apply a batch of inserts, updates and lookups with one statement per table and shape.

        Inserts go first, parent tables before child tables (foreign keys); then the updates: all the
        updates of one row are merged into one, later values winning (the same end state as applying
        them in order), and rows with the same columns changed share a statement; then the lookups,
        one ``batch_fn`` call each. Raises on any failure (the caller then applies the batch one
        statement at a time, which names the operation at fault).
        """
        inserts: dict[tuple[str, tuple[str, ...]], tuple[Table, list[dict[str, Any]]]] = {}
        merged: dict[tuple[str, Any], tuple[Table, Any, dict[str, Any]]] = {}
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
                    row = merged.get((table.name, row_id))
                    if row is None:
                        merged[(table.name, row_id)] = (table, row_id, dict(changes))
                    else:
                        row[2].update(changes)
                elif position == last:  # a lookup whose answer is the operation's result
                    lookups.append((index, action[2], action[3]))
        groups: dict[tuple[str, tuple[str, ...]], tuple[Table, list[tuple[Any, dict[str, Any]]]]] = {}
        for table, row_id, changes in merged.values():
            groups.setdefault((table.name, tuple(changes)), (table, []))[1].append((row_id, changes))
        if inserts:
            order = dml.table_order(next(iter(inserts.values()))[0])  # parents first
            for (_, columns), (table, rows) in sorted(
                inserts.items(), key=lambda kv: order.get(kv[0][0], 99)
            ):
                if len(rows) == 1:  # the plain statement: cheaper than the multi-row form for one row
                    cursor.execute(*dml.insert(table, rows[0]))
                elif dml.multi_row:
                    for start, end in dml.chunks(len(rows), len(columns)):
                        cursor.execute(*dml.insert_rows(table, rows[start:end]))
                else:
                    cursor.executemany(*dml.insert_params(table, rows))
        for table, items in groups.values():
            if checks is not None:  # pipeline mode: counted once the answers are in
                counted = new_cursor()
                if len(items) == 1:
                    counted.execute(*dml.update(table, *items[0]))
                else:
                    counted.execute(*dml.update_rows(table, items))
                checks.append((counted, len(items), table))
                continue
            if len(items) == 1:
                cursor.execute(*dml.update(table, *items[0]))
                found = cursor.rowcount
            elif dml.update_from:
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
        if self._inline and not invalidate:  # back to the pool with SQLite's usual settings
            with contextlib.suppress(Exception):
                cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_LOCK_WAIT_S * 1000)}")
                cursor.execute("PRAGMA wal_autocheckpoint = 1000")
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


def _closed_error(operation: Operation) -> StorageError:
    return StorageError(f"could not store {operation.describe()}: the store is closed")


def _by_loop(
    done: list[tuple[Item, Outcome]],
) -> dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Outcome]]]:
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Outcome]]] = {}
    for (_, future, loop), outcome in done:
        by_loop.setdefault(loop, []).append((future, outcome))
    return by_loop


def _row_name(table: Table) -> str:
    return {"flow_runs": "run", "flow_step_runs": "step", "llm_requests": "LLM request"}.get(
        table.name, "row"
    )
