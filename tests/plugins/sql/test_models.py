"""The tables: every field and index of the seed plan's models, the additions, and the records they store."""

from __future__ import annotations

import pytest
from sqlalchemy import UniqueConstraint

from flow_engine.plugin import LLMRequestRecord, RunRecord, StepRecord
from flow_engine.plugins.sql.models import FlowRunModel, FlowStepRunModel, LLMRequestModel

SEED_RUN_FIELDS = {
    "id", "user_id", "flow_name", "status", "execution_mode", "current_step", "step_progress", "total_steps",
    "progress_percentage", "created_at", "started_at", "completed_at", "last_heartbeat", "total_tokens",
    "total_cost", "execution_time_ms", "inputs", "outputs", "flow_metadata", "error_message",
}  # fmt: skip
SEED_STEP_FIELDS = {
    "id", "flow_run_id", "llm_request_id", "step_name", "step_order", "status", "inputs", "outputs",
    "tokens_used", "cost_estimate", "execution_time_ms", "error_message", "step_metadata", "created_at",
    "completed_at",
}  # fmt: skip


def indexed(model: type) -> set[str]:
    """Columns that lead an index: every query an index on that column alone serves, it serves too."""
    return {next(iter(index.columns)).name for index in model.__table__.indexes}


def test_history_indexes_end_with_newest_first_order():
    """Listings by flow, status, user and parent read one index backwards (revision 0003)."""
    columns = {tuple(c.name for c in index.columns) for index in FlowRunModel.__table__.indexes}
    for first in ("flow_name", "status", "user_id", "parent_run_id"):
        assert (first, "created_at", "id") in columns
    assert ("created_at", "id") in columns
    assert ("status", "last_heartbeat") in columns


def test_every_seed_field_is_a_column():
    assert SEED_RUN_FIELDS <= set(FlowRunModel.__table__.c.keys())
    assert SEED_STEP_FIELDS <= set(FlowStepRunModel.__table__.c.keys())


def test_seed_indexes_and_the_added_ones():
    assert indexed(FlowRunModel) >= {"user_id", "flow_name", "status", "parent_run_id", "created_at"}
    assert indexed(FlowStepRunModel) >= {"flow_run_id", "llm_request_id", "step_name", "status"}
    assert indexed(LLMRequestModel) >= {"flow_run_id", "step_run_id", "call_id"}


def test_unique_keys_for_resuming():
    def uniques(model: type) -> set[tuple[str, ...]]:
        constraints = model.__table__.constraints
        return {tuple(c.name for c in u.columns) for u in constraints if isinstance(u, UniqueConstraint)}

    assert ("flow_run_id", "step_key") in uniques(FlowStepRunModel)
    assert ("parent_run_id", "run_key") in uniques(FlowRunModel)


def test_foreign_keys():
    def targets(model: type) -> dict[str, str]:
        return {fk.parent.name: fk.target_fullname for fk in model.__table__.foreign_keys}

    assert targets(FlowRunModel) == {"parent_run_id": "flow_runs.id"}
    assert targets(FlowStepRunModel) == {"flow_run_id": "flow_runs.id", "llm_request_id": "llm_requests.id"}
    assert targets(LLMRequestModel) == {"flow_run_id": "flow_runs.id"}


@pytest.mark.parametrize(
    ("model", "record", "table_only"),
    [
        (FlowRunModel, RunRecord, {"cancel_requested"}),
        (FlowStepRunModel, StepRecord, set()),
        (LLMRequestModel, LLMRequestRecord, set()),
    ],
)
def test_columns_match_the_records(model, record, table_only):
    assert set(model.__table__.c.keys()) - table_only == set(record.model_fields)


def test_unknown_cost_is_nullable_and_known_totals_are_not():
    assert FlowStepRunModel.__table__.c.cost_estimate.nullable
    assert LLMRequestModel.__table__.c.cost.nullable
    assert not FlowRunModel.__table__.c.total_cost.nullable
    assert not FlowRunModel.__table__.c.unpriced_calls.nullable
