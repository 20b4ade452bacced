"""Statements built with SQLAlchemy Core, compiled once, run on a DBAPI cursor (the write path).

The writer thread sends a handful of tiny statements per step. Going through ``Connection.execute``
each time (events, execution context, result objects) costs about as much again as the SQL itself on
SQLite, so each statement shape (table, kind, column set) is compiled once per dialect into its SQL
text, parameter order and the columns' bind processors (UUID, JSON, datetime conversion), and then run
directly on the cursor. Statements still come from the models' tables; only the per-call machinery is
skipped.

The writer also applies a whole batch with a handful of statements (``writer.py``): many rows of one
shape in ONE statement on SQLite (a multi-row ``INSERT``, an ``UPDATE ... FROM (VALUES ...)``) and
``rows_by_id`` for one ``SELECT ... WHERE id IN (...)``. Each statement the writer thread runs lets go
of the GIL and must then wait to get it back from a busy event loop; fewer statements per batch is
what keeps the writer's latency down when the event loop is CPU-bound.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Table, bindparam, insert, update
from sqlalchemy.engine import Dialect

ID_PARAM = "_row_id"


class CompiledDml:
    """One statement shape: its SQL text and how to turn a dict of values into driver parameters."""

    __slots__ = ("names", "plan", "positional", "sql")

    def __init__(self, stmt: Any, dialect: Dialect, column_keys: Sequence[str] | None = None):
        compiled = stmt.compile(
            dialect=dialect, column_keys=list(column_keys) if column_keys is not None else None
        )
        if column_keys is not None:
            expected = set(column_keys) | ({ID_PARAM} if ID_PARAM in compiled.binds else set())
            if set(compiled.binds) != expected:  # a column default would need SQLAlchemy's execution context
                raise ValueError(f"statement needs values for {sorted(set(compiled.binds) - expected)}")
        self.sql: str = str(compiled)
        self.positional: bool = bool(compiled.positional)
        self.names: tuple[str, ...] = (
            tuple(compiled.positiontup or ()) if self.positional else tuple(compiled.binds)
        )
        # in parameter order: (name, bind processor or None, the value bound in the statement itself);
        # processors turn UUIDs into hex or uuid, JSON into text, datetimes into UTC
        self.plan: tuple[tuple[str, Callable[[Any], Any] | None, Any], ...] = tuple(
            (
                name,
                compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect),
                compiled.binds[name].value,
            )
            for name in self.names
        )

    def params(self, values: dict[str, Any]) -> Any:
        converted = []
        for name, processor, default in self.plan:
            value = values[name] if name in values else default
            converted.append(value if processor is None else processor(value))
        if self.positional:
            return converted
        return dict(zip(self.names, converted, strict=True))


class DmlCache:
    """Compiled statements of some tables for one dialect. Used by one thread (the writer)."""

    def __init__(self, dialect: Dialect):
        self.dialect = dialect
        self._cache: dict[Any, CompiledDml] = {}
        self._multi: dict[Any, str] = {}
        # what the multi-row forms need: positional "?" parameters (SQLite), UPDATE ... FROM (3.33+)
        self.multi_row = dialect.name == "sqlite" and dialect.paramstyle == "qmark"
        self.update_from = self.multi_row and sqlite3.sqlite_version_info >= (3, 33, 0)
        self.max_params = 999  # SQLite's smallest limit of parameters per statement; see set_max_params

    def set_max_params(self, driver_connection: Any) -> None:
        """Learn the connection's real limit of parameters per statement (SQLite: usually 32766)."""
        getlimit = getattr(driver_connection, "getlimit", None)  # Python 3.11+ sqlite3
        if self.multi_row and getlimit is not None:
            try:
                self.max_params = max(999, int(getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)))
            except Exception:  # pragma: no cover - keep the safe default
                pass

    def _insert(self, table: Table, values: dict[str, Any]) -> CompiledDml:
        key = (table.name, "insert", tuple(values))
        compiled = self._cache.get(key)
        if compiled is None:
            compiled = self._cache[key] = CompiledDml(insert(table), self.dialect, list(values))
        return compiled

    def _update(self, table: Table, changes: dict[str, Any]) -> CompiledDml:
        key = (table.name, "update", tuple(changes))
        compiled = self._cache.get(key)
        if compiled is None:
            stmt = update(table).where(table.c.id == bindparam(ID_PARAM))
            compiled = self._cache[key] = CompiledDml(stmt, self.dialect, list(changes))
        return compiled

    def insert(self, table: Table, values: dict[str, Any]) -> tuple[str, Any]:
        compiled = self._insert(table, values)
        return compiled.sql, compiled.params(values)

    def update(self, table: Table, row_id: Any, changes: dict[str, Any]) -> tuple[str, Any]:
        """``UPDATE table SET <changes> WHERE id = row_id``."""
        compiled = self._update(table, changes)
        return compiled.sql, compiled.params({**changes, ID_PARAM: row_id})

    def rows_per_statement(self, columns: int) -> int:
        return max(1, self.max_params // max(1, columns))

    def insert_rows(self, table: Table, rows: Sequence[dict[str, Any]]) -> tuple[str, list[Any]]:
        """ONE ``INSERT`` of several rows with the same columns (``multi_row`` dialects only; at most
        ``rows_per_statement(len(columns))`` rows)."""
        compiled = self._insert(table, rows[0])
        key = (table.name, "insert", tuple(rows[0]), len(rows))
        sql = self._multi.get(key)
        if sql is None:
            head, _, row = compiled.sql.rpartition(" VALUES ")
            if not head or row != "(" + ", ".join("?" * len(compiled.names)) + ")":
                raise ValueError(f"cannot make a multi-row INSERT of: {compiled.sql}")
            sql = self._multi[key] = f"{head} VALUES {', '.join([row] * len(rows))}"
        params = [value for values in rows for value in compiled.params(values)]
        return sql, params

    def update_rows(self, table: Table, rows: Sequence[tuple[Any, dict[str, Any]]]) -> tuple[str, list[Any]]:
        """ONE ``UPDATE table SET ... FROM (VALUES (...), ...) WHERE id = ...`` of several rows, each
        ``(row_id, changes)`` with the same columns changed and no row twice (``update_from`` only).
        Its rowcount is the number of rows found."""
        compiled = self._update(table, rows[0][1])
        key = (table.name, "update", tuple(rows[0][1]), len(rows))
        sql = self._multi.get(key)
        if sql is None:
            quote = self.dialect.identifier_preparer.quote
            names = compiled.names
            sets = ", ".join(
                f"{quote(table.c[name].name)} = v.column{i}"
                for i, name in enumerate(names, start=1)
                if name != ID_PARAM
            )
            row = "(" + ", ".join("?" * len(names)) + ")"
            sql = self._multi[key] = (
                f"UPDATE {quote(table.name)} SET {sets} FROM (VALUES {', '.join([row] * len(rows))}) AS v "
                f"WHERE {quote(table.name)}.{quote(table.c.id.name)} = v.column{names.index(ID_PARAM) + 1}"
            )
        params = [v for row_id, changes in rows for v in compiled.params({**changes, ID_PARAM: row_id})]
        return sql, params

    def update_params(
        self, table: Table, rows: Sequence[tuple[Any, dict[str, Any]]]
    ) -> tuple[str, list[Any]]:
        """The single-row ``UPDATE`` of ``rows`` (same columns changed) and one parameter set per row, for
        ``executemany`` (psycopg sends them all in one round trip)."""
        compiled = self._update(table, rows[0][1])
        return compiled.sql, [compiled.params({**changes, ID_PARAM: row_id}) for row_id, changes in rows]

    def insert_params(self, table: Table, rows: Sequence[dict[str, Any]]) -> tuple[str, list[Any]]:
        """The single-row ``INSERT`` of ``rows`` (same columns) and one parameter set per row."""
        compiled = self._insert(table, rows[0])
        return compiled.sql, [compiled.params(values) for values in rows]

    def rows_by_id(
        self, cursor: Any, table: Table, columns: Sequence[str], ids: Sequence[Any]
    ) -> dict[Any, tuple[Any, ...]]:
        """``SELECT id, <columns> FROM table WHERE id IN (<ids>)``, values converted back to Python
        (UUIDs, booleans, ...), keyed by id. Ids that are not found are missing from the result."""
        if self.dialect.paramstyle == "qmark":
            mark = "?"
        elif self.dialect.paramstyle in ("format", "pyformat"):
            mark = "%s"
        else:  # pragma: no cover - SQLite and psycopg are the backends
            raise NotImplementedError(f"paramstyle {self.dialect.paramstyle}")
        quote = self.dialect.identifier_preparer.quote
        id_column = table.c.id
        to_db = id_column.type.dialect_impl(self.dialect).bind_processor(self.dialect)
        selected = [id_column, *(table.c[name] for name in columns)]
        to_python = [c.type.dialect_impl(self.dialect).result_processor(self.dialect, None) for c in selected]
        names = ", ".join(quote(c.name) for c in selected)
        head = f"SELECT {names} FROM {quote(table.name)} WHERE {quote(id_column.name)} IN "
        found: dict[Any, tuple[Any, ...]] = {}
        chunk = max(1, min(1000, self.max_params))
        for start in range(0, len(ids), chunk):
            part = ids[start : start + chunk]
            cursor.execute(
                head + "(" + ", ".join([mark] * len(part)) + ")",
                [to_db(i) if to_db else i for i in part],
            )
            for raw in cursor.fetchall():
                row = tuple(f(v) if f and v is not None else v for f, v in zip(to_python, raw, strict=True))
                found[row[0]] = row[1:]
        return found

    def statement(self, key: str, build: Callable[[], Any], values: dict[str, Any]) -> tuple[str, Any]:
        """Any other Core statement, built by ``build()`` the first time ``key`` is seen; ``values`` fill
        its ``bindparam()``s."""
        compiled = self._cache.get(key)
        if compiled is None:
            compiled = self._cache[key] = CompiledDml(build(), self.dialect)
        return compiled.sql, compiled.params(values)
