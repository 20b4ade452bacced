"""Statements built with SQLAlchemy Core, compiled once, run on a DBAPI cursor (the write path).

The writer thread sends a handful of tiny statements per step. Going through ``Connection.execute``
each time (events, execution context, result objects) costs about as much again as the SQL itself on
SQLite, so each statement shape (table, kind, column set) is compiled once per dialect into its SQL
text, parameter order and the columns' bind processors (UUID, JSON, datetime conversion), and then run
directly on the cursor. Statements still come from the models' tables; only the per-call machinery is
skipped.
"""

from __future__ import annotations

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

    def insert(self, table: Table, values: dict[str, Any]) -> tuple[str, Any]:
        key = (table.name, "insert", tuple(values))
        compiled = self._cache.get(key)
        if compiled is None:
            compiled = self._cache[key] = CompiledDml(insert(table), self.dialect, list(values))
        return compiled.sql, compiled.params(values)

    def update(self, table: Table, row_id: Any, changes: dict[str, Any]) -> tuple[str, Any]:
        """``UPDATE table SET <changes> WHERE id = row_id``."""
        key = (table.name, "update", tuple(changes))
        compiled = self._cache.get(key)
        if compiled is None:
            stmt = update(table).where(table.c.id == bindparam(ID_PARAM))
            compiled = self._cache[key] = CompiledDml(stmt, self.dialect, list(changes))
        return compiled.sql, compiled.params({**changes, ID_PARAM: row_id})

    def statement(self, key: str, build: Callable[[], Any], values: dict[str, Any]) -> tuple[str, Any]:
        """Any other Core statement, built by ``build()`` the first time ``key`` is seen; ``values`` fill
        its ``bindparam()``s."""
        compiled = self._cache.get(key)
        if compiled is None:
            compiled = self._cache[key] = CompiledDml(build(), self.dialect)
        return compiled.sql, compiled.params(values)
