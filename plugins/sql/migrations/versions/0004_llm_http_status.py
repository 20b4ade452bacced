"""Add llm_requests.http_status: the HTTP status a server really answered an attempt with.

Revision ID: 0004_llm_http_status
Revises: 0003_history_indexes
Create Date: 2026-12-03

NULL when no server answered (connection refused, unknown host, timeout, an in-process model).
Rows written before this revision keep NULL: their status is only in ``error_message``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_llm_http_status"
down_revision: str | Sequence[str] | None = "0003_history_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("llm_requests", sa.Column("http_status", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("llm_requests") as batch:
        batch.drop_column("http_status")
