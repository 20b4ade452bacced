"""Create flow_runs, llm_requests and flow_step_runs.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-25

After adding a revision, set ``HEAD`` in flow_engine/plugins/sql/schema.py to its id.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from flow_engine.plugins.sql import types

revision: str = "0001_initial"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "flow_runs",
        sa.Column("id", types.UUID(), nullable=False),
        sa.Column("user_id", types.UUID(), nullable=True),
        sa.Column("flow_name", sa.String(length=100), nullable=False),
        sa.Column("parent_run_id", types.UUID(), nullable=True),
        sa.Column("run_key", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=50), nullable=False),
        sa.Column("execution_mode", sa.String(length=20), nullable=False),
        sa.Column("current_step", sa.String(length=200), nullable=True),
        sa.Column("step_progress", sa.Integer(), nullable=False),
        sa.Column("total_steps", sa.Integer(), nullable=True),
        sa.Column("progress_percentage", sa.Float(), nullable=False),
        sa.Column("created_at", types.UTCDateTime(), server_default=sa.func.now(), nullable=False),
        sa.Column("started_at", types.UTCDateTime(), nullable=True),
        sa.Column("completed_at", types.UTCDateTime(), nullable=True),
        sa.Column("last_heartbeat", types.UTCDateTime(), nullable=True),
        sa.Column("total_tokens", sa.Integer(), nullable=False),
        sa.Column("total_cost", sa.Float(), nullable=False),
        sa.Column("unpriced_calls", sa.Integer(), nullable=False),
        sa.Column("execution_time_ms", sa.Integer(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("inputs", _json(), nullable=False),
        sa.Column("outputs", _json(), nullable=True),
        sa.Column("flow_metadata", _json(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["parent_run_id"], ["flow_runs.id"], name=op.f("fk_flow_runs_parent_run_id_flow_runs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flow_runs")),
        sa.UniqueConstraint("parent_run_id", "run_key", name=op.f("uq_flow_runs_parent_run_id_run_key")),
    )
    op.create_index(op.f("ix_flow_runs_created_at"), "flow_runs", ["created_at"])
    op.create_index(op.f("ix_flow_runs_flow_name"), "flow_runs", ["flow_name"])
    op.create_index(op.f("ix_flow_runs_parent_run_id"), "flow_runs", ["parent_run_id"])
    op.create_index(op.f("ix_flow_runs_status"), "flow_runs", ["status"])
    op.create_index(op.f("ix_flow_runs_user_id"), "flow_runs", ["user_id"])

    op.create_table(
        "llm_requests",
        sa.Column("id", types.UUID(), nullable=False),
        sa.Column("flow_run_id", types.UUID(), nullable=True),
        sa.Column("step_run_id", types.UUID(), nullable=True),
        sa.Column("call_id", types.UUID(), nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("provider", sa.String(length=100), nullable=True),
        sa.Column("api_base", sa.Text(), nullable=True),
        sa.Column("request_messages", _json(), nullable=True),
        sa.Column("request_params", _json(), nullable=True),
        sa.Column("response", _json(), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("total_tokens", sa.Integer(), nullable=False),
        sa.Column("cost", sa.Float(), nullable=True),
        sa.Column("latency_ms", sa.Integer(), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=50), nullable=False),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("created_at", types.UTCDateTime(), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["flow_run_id"], ["flow_runs.id"], name=op.f("fk_llm_requests_flow_run_id_flow_runs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_llm_requests")),
    )
    op.create_index(op.f("ix_llm_requests_call_id"), "llm_requests", ["call_id"])
    op.create_index(op.f("ix_llm_requests_flow_run_id"), "llm_requests", ["flow_run_id"])
    op.create_index(op.f("ix_llm_requests_step_run_id"), "llm_requests", ["step_run_id"])

    op.create_table(
        "flow_step_runs",
        sa.Column("id", types.UUID(), nullable=False),
        sa.Column("flow_run_id", types.UUID(), nullable=False),
        sa.Column("llm_request_id", types.UUID(), nullable=True),
        sa.Column("step_name", sa.String(length=100), nullable=False),
        sa.Column("step_key", sa.String(length=200), nullable=False),
        sa.Column("step_type", sa.String(length=50), nullable=False),
        sa.Column("step_order", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=50), nullable=False),
        sa.Column("inputs", _json(), nullable=False),
        sa.Column("outputs", _json(), nullable=True),
        sa.Column("tokens_used", sa.Integer(), nullable=False),
        sa.Column("cost_estimate", sa.Float(), nullable=True),
        sa.Column("execution_time_ms", sa.Integer(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("step_metadata", _json(), nullable=True),
        sa.Column("created_at", types.UTCDateTime(), server_default=sa.func.now(), nullable=False),
        sa.Column("completed_at", types.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["flow_run_id"], ["flow_runs.id"], name=op.f("fk_flow_step_runs_flow_run_id_flow_runs")
        ),
        sa.ForeignKeyConstraint(
            ["llm_request_id"],
            ["llm_requests.id"],
            name=op.f("fk_flow_step_runs_llm_request_id_llm_requests"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flow_step_runs")),
        sa.UniqueConstraint("flow_run_id", "step_key", name=op.f("uq_flow_step_runs_flow_run_id_step_key")),
    )
    op.create_index(op.f("ix_flow_step_runs_flow_run_id"), "flow_step_runs", ["flow_run_id"])
    op.create_index(op.f("ix_flow_step_runs_llm_request_id"), "flow_step_runs", ["llm_request_id"])
    op.create_index(op.f("ix_flow_step_runs_status"), "flow_step_runs", ["status"])
    op.create_index(op.f("ix_flow_step_runs_step_name"), "flow_step_runs", ["step_name"])


def downgrade() -> None:
    op.drop_table("flow_step_runs")  # its indexes go with it
    op.drop_table("llm_requests")
    op.drop_table("flow_runs")
