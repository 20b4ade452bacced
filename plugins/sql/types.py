"""Column types that behave the same on SQLite and PostgreSQL.

- ``UUID``: native ``uuid`` on PostgreSQL, ``CHAR(32)`` hex elsewhere; always ``uuid.UUID`` in Python.
- ``UTCDateTime``: ``timestamptz`` on PostgreSQL; on SQLite (which has no time zones) the UTC wall time.
  Values are stored in UTC and always come back timezone-aware (UTC), so records round-trip unchanged.
- ``JSONType``: ``JSON`` with SQL NULL for ``None`` (never the JSON text ``null``); ``JSONB`` on PostgreSQL.

Migrations import this module, so renaming a class here means editing the revisions too.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import CHAR, JSON, DateTime
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine


class UUID(TypeDecorator[uuid.UUID]):
    """Database-agnostic UUID type."""

    impl = CHAR(32)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.UUID(as_uuid=True))
        return dialect.type_descriptor(CHAR(32))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, uuid.UUID):
            value = uuid.UUID(str(value))
        return value if dialect.name == "postgresql" else value.hex

    def process_result_value(self, value: Any, dialect: Dialect) -> uuid.UUID | None:
        if value is None or isinstance(value, uuid.UUID):
            return value
        return uuid.UUID(str(value))


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware datetimes, stored in UTC. A naive value is taken to be UTC already."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        if dialect.name == "postgresql":
            return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return value.replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def JSONType() -> TypeEngine[Any]:
    """JSON everywhere, JSONB on PostgreSQL; ``None`` is stored as SQL NULL."""
    return JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
