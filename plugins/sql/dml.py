"""Statements built with SQLAlchemy Core, compiled once, run on a DBAPI cursor (the write path).

The writer thread sends a handful of tiny statements per step. Going through ``Connection.execute``
each time (events, execution context, result objects) costs about as much again as the SQL itself on
SQLite, so each statement shape (table, kind, column set) is compiled once per dialect into its SQL
text, parameter order and the columns' bind processors (UUID, JSON, datetime conversion), and then run
directly on the cursor. Statements still come from the models' tables; only the per-call machinery is
skipped.

The writer also applies a whole batch with a handful of statements (``writer.py``): many rows of one
shape in ONE statement on SQLite and PostgreSQL (a multi-row ``INSERT``, an ``UPDATE ... FROM
(VALUES ...)``) and ``rows_by_id`` for one ``SELECT ... WHERE id IN (...)``. Each statement the
writer thread runs lets go of the GIL and must then wait to get it back from a busy event loop; fewer
statements per batch is what keeps the writer's latency down when the event loop is CPU-bound.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from sqlalchemy import Boolean, Float, Integer, String, Table, bindparam, insert, update
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

    def values(self, values: dict[str, Any]) -> list[Any]:
        """The driver's values, in ``names`` order."""
        converted = []
        for name, processor, default in self.plan:
            value = values[name] if name in values else default
            converted.append(value if processor is None else processor(value))
        return converted

    def params(self, values: dict[str, Any]) -> Any:
        converted = self.values(values)
        if self.positional:
            return converted
        return dict(zip(self.names, converted, strict=True))


class DmlCache:
    """Compiled statements of some tables for one dialect. Used by one thread (the writer)."""

    def __init__(self, dialect: Dialect):
        self.dialect = dialect
        self._cache: dict[Any, CompiledDml] = {}
        self._multi: dict[Any, str] = {}
        self._types: dict[tuple[str, str], str] = {}
        # the multi-row forms: SQLite, rows of "?" in VALUES (UPDATE ... FROM since 3.33); PostgreSQL,
        # one array per column through unnest(), so a shape is one statement text whatever the row count
        self.sqlite = dialect.name == "sqlite" and dialect.paramstyle == "qmark"
        self.postgres = dialect.name == "postgresql" and dialect.paramstyle in ("format", "pyformat")
        self.multi_row = self.sqlite or self.postgres
        self.update_from = self.postgres or (self.sqlite and sqlite3.sqlite_version_info >= (3, 33, 0))
        self.max_params = 999  # SQLite's smallest limit of parameters per statement; see set_max_params
        self._coerce: dict[tuple[str, str], Callable[[Any], Any] | None] = {}
        self._order: dict[Any, dict[str, int]] = {}
        self._selects: dict[tuple[str, tuple[str, ...]], tuple[str, Any, list[Any]]] = {}

    def set_max_params(self, driver_connection: Any) -> None:
        """Learn the connection's real limit of parameters per statement (SQLite: usually 32766)."""
        getlimit = getattr(driver_connection, "getlimit", None)  # Python 3.11+ sqlite3
        if self.sqlite and getlimit is not None:
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

    def chunks(self, rows: int, columns: int) -> Iterator[tuple[int, int]]:
        """``(start, end)`` slices of ``rows`` rows, one multi-row statement each. SQLite: sizes that are
        powers of two (37 rows: 32 + 4 + 1) within its limit of parameters, so that a shape has a few
        statement texts for sqlite3's statement cache rather than one per batch size. PostgreSQL: one
        slice (its statements take one array per column, whatever the number of rows)."""
        if not self.sqlite:
            yield 0, rows
            return
        most = max(1, self.max_params // max(1, columns))
        limit = 1 << (most.bit_length() - 1)
        start = 0
        while start < rows:
            size = min(limit, 1 << ((rows - start).bit_length() - 1))
            yield start, start + size
            start += size

    def _array_type(self, table: Table, name: str) -> str:
        """PostgreSQL: the array type of a column, for ``%b::TYPE[]`` (without a length: casting to
        VARCHAR(n) would truncate silently, where assigning to the column refuses a longer value)."""
        key = (table.name, name)
        kind = self._types.get(key)
        if kind is None:
            column = table.c[name if name != ID_PARAM else "id"]
            kind = self._types[key] = re.sub(r"\(\d+\)$", "", column.type.compile(dialect=self.dialect))
        return f"{kind}[]"

    def _rows_source(self, table: Table, names: Sequence[str], count: int) -> str:
        """What the rows are selected from: ``(VALUES (?, ?), (?, ?))`` on SQLite (columns ``column1``,
        ``column2``...), ``unnest(%b::T1[], %b::T2[])`` on PostgreSQL (``%b``: psycopg dumps arrays in
        binary much faster than as text, which escapes every element)."""
        if self.sqlite:
            row = "(" + ", ".join("?" * len(names)) + ")"
            return f"(VALUES {', '.join([row] * count)})"
        return "unnest(" + ", ".join(f"%b::{self._array_type(table, name)}" for name in names) + ")"

    def _coercion(self, table: Table, name: str) -> Callable[[Any], Any] | None:
        """PostgreSQL: what makes a column's values one Python type (psycopg refuses to dump a list of
        mixed types, such as a cost of ``0`` among floats)."""
        key = (table.name, name)
        if key not in self._coerce:
            kind = table.c[name if name != ID_PARAM else "id"].type.dialect_impl(self.dialect)
            fn: Callable[[Any], Any] | None = None
            if isinstance(kind, Float):
                fn = float
            elif isinstance(kind, Boolean):
                fn = bool
            elif isinstance(kind, Integer):
                fn = int
            elif isinstance(kind, String):  # an str subclass (a StrEnum) is a type of its own to psycopg
                fn = str
            self._coerce[key] = fn
        return self._coerce[key]

    def _params(self, table: Table, compiled: CompiledDml, rows: list[dict[str, Any]]) -> list[Any]:
        """SQLite: the values row after row; PostgreSQL: one list per column."""
        values = [compiled.values(row) for row in rows]
        if self.sqlite:
            return [value for row in values for value in row]
        columns = []
        for name, column in zip(compiled.names, zip(*values, strict=True), strict=True):
            fn = self._coercion(table, name)
            columns.append([v if v is None or fn is None or type(v) is fn else fn(v) for v in column])
        return columns

    def insert_rows(self, table: Table, rows: Sequence[dict[str, Any]]) -> tuple[str, list[Any]]:
        """ONE ``INSERT`` of several rows with the same columns (``multi_row`` dialects only; a slice
        given by ``chunks``)."""
        compiled = self._insert(table, rows[0])
        key = (table.name, "insert", tuple(rows[0]), len(rows) if self.sqlite else 0)
        sql = self._multi.get(key)
        if sql is None:
            quote = self.dialect.identifier_preparer.quote
            columns = ", ".join(quote(table.c[name].name) for name in compiled.names)
            source = self._rows_source(table, compiled.names, len(rows))
            select = source[1:-1] if self.sqlite else f"SELECT * FROM {source}"
            sql = self._multi[key] = f"INSERT INTO {quote(table.name)} ({columns}) {select}"
        return sql, self._params(table, compiled, list(rows))

    def update_rows(self, table: Table, rows: Sequence[tuple[Any, dict[str, Any]]]) -> tuple[str, list[Any]]:
        """ONE ``UPDATE table SET ... FROM <rows> AS v WHERE table.id = v.id`` of several rows, each
        ``(row_id, changes)`` with the same columns changed and no row twice (``update_from`` only; a
        slice given by ``chunks``). Its rowcount is the number of rows found."""
        compiled = self._update(table, rows[0][1])
        key = (table.name, "update", tuple(rows[0][1]), len(rows) if self.sqlite else 0)
        sql = self._multi.get(key)
        if sql is None:
            quote = self.dialect.identifier_preparer.quote
            names = compiled.names
            alias = [f"column{i}" if self.sqlite else f"c{i}" for i in range(1, len(names) + 1)]
            sets = ", ".join(
                f"{quote(table.c[name].name)} = v.{column}"
                for name, column in zip(names, alias, strict=True)
                if name != ID_PARAM
            )
            source = self._rows_source(table, names, len(rows))
            as_v = "v" if self.sqlite else f"v({', '.join(alias)})"
            sql = self._multi[key] = (
                f"UPDATE {quote(table.name)} SET {sets} FROM {source} AS {as_v} "
                f"WHERE {quote(table.name)}.{quote(table.c.id.name)} = v.{alias[names.index(ID_PARAM)]}"
            )
        return sql, self._params(table, compiled, [{**changes, ID_PARAM: row_id} for row_id, changes in rows])

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

    def table_order(self, table: Table) -> dict[str, int]:
        """Position of each table of ``table``'s metadata, parents before children (foreign keys).
        Sorting the metadata's tables costs more than a small batch's SQL: done once."""
        order = self._order.get(table.metadata)
        if order is None:
            tables = table.metadata.sorted_tables
            order = self._order[table.metadata] = {t.name: i for i, t in enumerate(tables)}
        return order

    def _select_by_id(self, table: Table, columns: Sequence[str]) -> tuple[str, Any, list[Any]]:
        """What ``rows_by_id`` needs for one table and column list, built once: the statement's head,
        the id's bind processor and each selected column's result processor."""
        key = (table.name, tuple(columns))
        found = self._selects.get(key)
        if found is None:
            quote = self.dialect.identifier_preparer.quote
            id_column = table.c.id
            to_db = id_column.type.dialect_impl(self.dialect).bind_processor(self.dialect)
            selected = [id_column, *(table.c[name] for name in columns)]
            to_python = [
                c.type.dialect_impl(self.dialect).result_processor(self.dialect, None) for c in selected
            ]
            names = ", ".join(quote(c.name) for c in selected)
            head = f"SELECT {names} FROM {quote(table.name)} WHERE {quote(id_column.name)}"
            found = self._selects[key] = (head, to_db, to_python)
        return found

    def rows_by_id(
        self, cursor: Any, table: Table, columns: Sequence[str], ids: Sequence[Any]
    ) -> dict[Any, tuple[Any, ...]]:
        """``SELECT id, <columns> FROM table WHERE id IN (<ids>)`` (PostgreSQL: ``id = ANY(%s)``), values
        converted back to Python (UUIDs, booleans, ...), keyed by id. Ids not found are left out."""
        if not self.multi_row:  # pragma: no cover - SQLite and psycopg are the backends
            raise NotImplementedError(f"rows_by_id on {self.dialect.name}")
        head, to_db, to_python = self._select_by_id(table, columns)
        values = [to_db(i) if to_db else i for i in ids]
        found: dict[Any, tuple[Any, ...]] = {}
        for start, end in self.chunks(len(values), 1):
            part = values[start:end]
            if self.sqlite:
                cursor.execute(f"{head} IN ({', '.join('?' * len(part))})", part)
            else:
                cursor.execute(f"{head} = ANY(%b::{self._array_type(table, 'id')})", [part])
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
