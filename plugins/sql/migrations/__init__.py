"""Alembic migrations of the SQL storage backend."""
