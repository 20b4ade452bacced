"""The URL schemes the SQL backend serves (``sqlite://``, ``postgresql://``, ``postgres://``, with or
without a driver: ``postgresql+psycopg://``). A module of its own so that the plugin's registration and
``flow db`` read them without importing each other."""

from __future__ import annotations

SCHEMES = ("sqlite", "postgresql", "postgres")
