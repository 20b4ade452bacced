"""One run per item of a batch.

Revision ID: 0006_batch_line
Revises: 0005_many_items
Create Date: 2026-12-04

- ``flow_runs.batch_line``: the run's item's line in its batch's inputs file, unique with
  ``batch_id`` (``ux_flow_runs_batch_line``), so that two ``flow batch --resume`` of one batch at once
  cannot both start an item. Runs of batches made before this revision keep it NULL (their line is in
  ``flow_metadata["batch"]``, which ``runs_of_batch`` reads); a NULL is never a duplicate.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_batch_line"
down_revision: str | Sequence[str] | None = "0005_many_items"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("flow_runs", sa.Column("batch_line", sa.Integer(), nullable=True))
    op.create_index("ux_flow_runs_batch_line", "flow_runs", ["batch_id", "batch_line"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_flow_runs_batch_line", table_name="flow_runs")
    with op.batch_alter_table("flow_runs") as batch:
        batch.drop_column("batch_line")
