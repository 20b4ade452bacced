"""Add flow_runs.claimed_by: the worker executing a submitted (background) run.

Revision ID: 0002_claimed_by
Revises: 0001_initial
Create Date: 2026-12-02

Set by the atomic ``claim_run`` of the storage backend, so a run redelivered to a second worker is
never executed by both. Nullable: runs executed in-process (``execute()``) are never claimed.

After adding a revision, set ``HEAD`` in flow_engine/plugins/sql/schema.py to its id.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_claimed_by"
down_revision: str | Sequence[str] | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("flow_runs", sa.Column("claimed_by", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("flow_runs") as batch:  # SQLite cannot drop a column in place everywhere
        batch.drop_column("claimed_by")
