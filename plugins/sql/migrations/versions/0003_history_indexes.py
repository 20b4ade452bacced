"""History lookups that stay fast at millions of runs: composite indexes, newest first.

Revision ID: 0003_history_indexes
Revises: 0002_claimed_by
Create Date: 2026-12-03

Each single-column index of flow_runs (the seed's user_id, flow_name, status, created_at, and
parent_run_id) becomes the first column of an index that ends with (created_at, id): a listing such
as ``flow runs --flow X`` (newest first, LIMIT n) reads n entries of one index backwards instead of
sorting every run of the flow. ``(status, last_heartbeat)`` makes stale-run detection a range scan;
``(status, created_at)`` does the same for runs pending too long. A run's steps and LLM requests are
read in order through (flow_run_id, step_order) and (flow_run_id, created_at). Nothing is lost: every
query the old indexes served uses the new ones' first column.

After adding a revision, set ``HEAD`` in flow_engine/plugins/sql/schema.py to its id.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003_history_indexes"
down_revision: str | Sequence[str] | None = "0002_claimed_by"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, old single-column index, its column) -> replaced by (new index, columns)
REPLACED = [
    ("flow_runs", "created_at", "ix_flow_runs_created_at_id", ["created_at", "id"]),
    ("flow_runs", "flow_name", "ix_flow_runs_flow_name_created_at", ["flow_name", "created_at", "id"]),
    ("flow_runs", "status", "ix_flow_runs_status_created_at", ["status", "created_at", "id"]),
    ("flow_runs", "user_id", "ix_flow_runs_user_id_created_at", ["user_id", "created_at", "id"]),
    (
        "flow_runs",
        "parent_run_id",
        "ix_flow_runs_parent_run_id_created_at",
        ["parent_run_id", "created_at", "id"],
    ),
    (
        "flow_step_runs",
        "flow_run_id",
        "ix_flow_step_runs_flow_run_id_step_order",
        ["flow_run_id", "step_order"],
    ),
    ("llm_requests", "flow_run_id", "ix_llm_requests_flow_run_id_created_at", ["flow_run_id", "created_at"]),
]
ADDED = [("flow_runs", "ix_flow_runs_status_last_heartbeat", ["status", "last_heartbeat"])]


def upgrade() -> None:
    for table, column, name, columns in REPLACED:
        op.create_index(name, table, columns)
        op.drop_index(f"ix_{table}_{column}", table_name=table)
    for table, name, columns in ADDED:
        op.create_index(name, table, columns)


def downgrade() -> None:
    for table, name, _ in ADDED:
        op.drop_index(name, table_name=table)
    for table, column, name, _ in REPLACED:
        op.create_index(f"ix_{table}_{column}", table, [column])
        op.drop_index(name, table_name=table)
