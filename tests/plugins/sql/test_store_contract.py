"""The SQL backend passes the store contract every backend passes, on SQLite and on PostgreSQL."""

from __future__ import annotations

from flow_engine.testing import RunStoreContract


class TestSqlStoreContract(RunStoreContract):
    """Runs with the ``store`` fixture of ``conftest.py`` (one per database)."""
