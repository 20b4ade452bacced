"""Many items (issue 18): batches, the response cache, the rate limiter's queue time.

Revision ID: 0005_many_items
Revises: 0004_llm_http_status
Create Date: 2026-12-04

- ``flow_runs.batch_id``: the ``flow batch`` a run belongs to (``flow runs --batch ID``), indexed
  with ``created_at`` like the other history filters.
- ``llm_requests.queue_ms``: how long an attempt waited for the rate limiter before it was sent
  (``latency_ms`` is the call alone).
- ``llm_requests.cached_from``: a cache hit's row names the request whose answer it reused.
- ``llm_cache``: answers kept by the response cache, by a hash of what was asked.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from flow_engine.plugins.sql.types import UUID, JSONType, UTCDateTime

revision: str = "0005_many_items"
down_revision: str | Sequence[str] | None = "0004_llm_http_status"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("flow_runs", sa.Column("batch_id", sa.String(64), nullable=True))
    op.create_index("ix_flow_runs_batch_id_created_at", "flow_runs", ["batch_id", "created_at", "id"])
    op.add_column("llm_requests", sa.Column("queue_ms", sa.Integer(), nullable=True))
    op.add_column("llm_requests", sa.Column("cached_from", UUID(), nullable=True))
    op.create_table(
        "llm_cache",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("response", JSONType(), nullable=False),
        sa.Column("request_id", UUID(), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("cost", sa.Float(), nullable=True),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("last_hit_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("key", name="pk_llm_cache"),
    )
    op.create_index("ix_llm_cache_model_created_at", "llm_cache", ["model", "created_at"])
    op.create_index("ix_llm_cache_created_at", "llm_cache", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_llm_cache_created_at", table_name="llm_cache")
    op.drop_index("ix_llm_cache_model_created_at", table_name="llm_cache")
    op.drop_table("llm_cache")
    with op.batch_alter_table("llm_requests") as batch:
        batch.drop_column("cached_from")
        batch.drop_column("queue_ms")
    op.drop_index("ix_flow_runs_batch_id_created_at", table_name="flow_runs")
    with op.batch_alter_table("flow_runs") as batch:
        batch.drop_column("batch_id")
