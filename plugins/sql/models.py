"""SQLAlchemy models of the three tables: the seed plan's ``flow_runs`` and ``flow_step_runs`` (every
field and index), plus ``llm_requests`` and what the engine needs beyond the seed.

Additions to the seed, and why:

- ``flow_runs.parent_run_id`` / ``run_key``: a flow executed inside a flow is a child run; its key
  (flow name + occurrence in the parent) identifies it again when the parent is resumed.
- ``flow_runs.unpriced_calls``: how many LLM calls had no known price, so ``total_cost`` is never
  mistaken for the full cost.
- ``flow_runs.cancel_requested``: set by ``flow cancel`` (any process), read by the running flow at
  its next step boundary or heartbeat. Not part of ``RunRecord``: only the store reads it.
- ``flow_runs.claimed_by``: the worker executing a submitted (background) run, set by the atomic
  ``claim_run`` so that two workers handed the same run never both execute it (revision 0002).
- ``flow_step_runs.step_key`` (unique per run) and ``step_type``: the stable key of a step (name +
  occurrence) that a resumed run matches saved outputs by.
- ``flow_step_runs.cost_estimate`` is nullable: NULL means "unknown price", never 0.
- ``flow_runs.batch_id``, ``llm_requests.queue_ms`` / ``cached_from`` and ``llm_cache``: batches, the
  rate limiter's wait and the response cache (revision 0005).
- ``flow_runs.batch_line`` (unique with ``batch_id``): one run per item of a batch (revision 0006).
- ``llm_requests``: one row per attempt of an LLM call (no API keys or auth headers, ever). Its
  ``step_run_id`` is indexed but has no foreign key, because ``flow_step_runs.llm_request_id`` already
  points the other way and a cycle of foreign keys cannot be created on PostgreSQL in one step.

The columns match the records in ``flow_engine.storage`` field for field, ``cancel_requested`` aside (a
test checks it); the store
writes with Core statements built from these tables, the repositories read with the ORM.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from .types import UUID, JSONType, UTCDateTime

__all__ = [
    "UUID",
    "Base",
    "FlowRunModel",
    "FlowStepRunModel",
    "LLMCacheModel",
    "LLMRequestModel",
    "flow_runs",
    "flow_step_runs",
    "llm_cache",
    "llm_requests",
]

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class FlowRunModel(Base):
    """Tracks execution of complete flows."""

    __tablename__ = "flow_runs"
    __table_args__ = (
        UniqueConstraint("parent_run_id", "run_key"),
        # history lookups stay index range scans however many runs there are (revision 0003): the
        # seed's single-column indexes became the first column of these, newest-first listings read
        # them backwards, and stale-run detection reads (status, last_heartbeat)
        Index("ix_flow_runs_created_at_id", "created_at", "id"),
        Index("ix_flow_runs_flow_name_created_at", "flow_name", "created_at", "id"),
        Index("ix_flow_runs_status_created_at", "status", "created_at", "id"),
        Index("ix_flow_runs_user_id_created_at", "user_id", "created_at", "id"),
        Index("ix_flow_runs_parent_run_id_created_at", "parent_run_id", "created_at", "id"),
        Index("ix_flow_runs_status_last_heartbeat", "status", "last_heartbeat"),
        Index("ix_flow_runs_batch_id_created_at", "batch_id", "created_at", "id"),
        Index("ux_flow_runs_batch_line", "batch_id", "batch_line", unique=True),
    )

    # Core identification
    id: Mapped[uuid.UUID] = mapped_column(UUID(), primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID | None] = mapped_column(UUID(), nullable=True)
    flow_name: Mapped[str] = mapped_column(String(100), nullable=False)
    parent_run_id: Mapped[uuid.UUID | None] = mapped_column(UUID(), ForeignKey("flow_runs.id"), nullable=True)
    run_key: Mapped[str | None] = mapped_column(String(200), nullable=True)

    # Execution tracking
    status: Mapped[str] = mapped_column(String(50), nullable=False, default="pending")
    execution_mode: Mapped[str] = mapped_column(String(20), nullable=False, default="sync")

    # Progress tracking
    current_step: Mapped[str | None] = mapped_column(String(200), nullable=True)
    step_progress: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    total_steps: Mapped[int | None] = mapped_column(Integer, nullable=True)
    progress_percentage: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)

    # Timing information
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, server_default=func.now())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_heartbeat: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    # Performance metrics
    total_tokens: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    total_cost: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    unpriced_calls: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    execution_time_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=false()
    )

    # Data and metadata
    inputs: Mapped[dict[str, Any]] = mapped_column(JSONType(), nullable=False)
    outputs: Mapped[dict[str, Any] | None] = mapped_column(JSONType(), nullable=True)
    flow_metadata: Mapped[dict[str, Any] | None] = mapped_column(JSONType(), nullable=True)

    # Error information
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)

    # Background execution: the worker that claimed the run (revision 0002)
    claimed_by: Mapped[str | None] = mapped_column(String(200), nullable=True)

    # The `flow batch` the run belongs to (revision 0005)
    batch_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Its item's line: one run per line of a batch (revision 0006)
    batch_line: Mapped[int | None] = mapped_column(Integer, nullable=True)

    # Relationships
    steps: Mapped[list[FlowStepRunModel]] = relationship(
        "FlowStepRunModel",
        back_populates="flow_run",
        cascade="all, delete-orphan",
        order_by="FlowStepRunModel.step_order",
    )


class LLMRequestModel(Base):
    """One attempt of one LLM call: what was asked, what came back, what it cost (NULL = unknown)."""

    __tablename__ = "llm_requests"
    __table_args__ = (Index("ix_llm_requests_flow_run_id_created_at", "flow_run_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID(), primary_key=True, default=uuid.uuid4)
    flow_run_id: Mapped[uuid.UUID | None] = mapped_column(UUID(), ForeignKey("flow_runs.id"), nullable=True)
    step_run_id: Mapped[uuid.UUID | None] = mapped_column(UUID(), nullable=True, index=True)
    call_id: Mapped[uuid.UUID] = mapped_column(UUID(), nullable=False, index=True)
    kind: Mapped[str] = mapped_column(String(30), nullable=False, default="completion")
    model: Mapped[str] = mapped_column(String(200), nullable=False)
    provider: Mapped[str | None] = mapped_column(String(100), nullable=True)
    api_base: Mapped[str | None] = mapped_column(Text, nullable=True)
    request_messages: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType(), nullable=True)
    request_params: Mapped[dict[str, Any] | None] = mapped_column(JSONType(), nullable=True)
    response: Mapped[dict[str, Any] | None] = mapped_column(JSONType(), nullable=True)
    prompt_tokens: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    total_tokens: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    cost: Mapped[float | None] = mapped_column(Float, nullable=True)
    latency_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    attempt: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    status: Mapped[str] = mapped_column(String(50), nullable=False, default="completed")
    http_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, server_default=func.now())
    # revision 0005: time spent waiting for the rate limiter; a cache hit's original request
    queue_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cached_from: Mapped[uuid.UUID | None] = mapped_column(UUID(), nullable=True)


class LLMCacheModel(Base):
    """One answer of the response cache (revision 0005), by a hash of model, messages, parameters
    and output schema. ``request_id`` is the request that paid for it; ``cost`` what it cost then."""

    __tablename__ = "llm_cache"
    __table_args__ = (
        Index("ix_llm_cache_model_created_at", "model", "created_at"),
        Index("ix_llm_cache_created_at", "created_at"),
    )

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(30), nullable=False)
    model: Mapped[str] = mapped_column(String(200), nullable=False)
    response: Mapped[dict[str, Any]] = mapped_column(JSONType(), nullable=False)
    request_id: Mapped[uuid.UUID | None] = mapped_column(UUID(), nullable=True)
    prompt_tokens: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    cost: Mapped[float | None] = mapped_column(Float, nullable=True)
    hits: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_hit_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class FlowStepRunModel(Base):
    """Tracks execution of individual steps within flows."""

    __tablename__ = "flow_step_runs"
    __table_args__ = (
        UniqueConstraint("flow_run_id", "step_key"),
        Index("ix_flow_step_runs_flow_run_id_step_order", "flow_run_id", "step_order"),
    )

    # Core identification
    id: Mapped[uuid.UUID] = mapped_column(UUID(), primary_key=True, default=uuid.uuid4)
    flow_run_id: Mapped[uuid.UUID] = mapped_column(UUID(), ForeignKey("flow_runs.id"), nullable=False)
    llm_request_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(), ForeignKey("llm_requests.id"), nullable=True, index=True
    )

    # Step information
    step_name: Mapped[str] = mapped_column(String(100), nullable=False, index=True)
    step_key: Mapped[str] = mapped_column(String(200), nullable=False)
    step_type: Mapped[str] = mapped_column(String(50), nullable=False)
    step_order: Mapped[int] = mapped_column(Integer, nullable=False)

    # Execution status
    status: Mapped[str] = mapped_column(String(50), nullable=False, default="pending", index=True)

    # Data capture
    inputs: Mapped[dict[str, Any]] = mapped_column(JSONType(), nullable=False)
    outputs: Mapped[dict[str, Any] | None] = mapped_column(JSONType(), nullable=True)

    # Performance metrics
    tokens_used: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # no default: with one, the ORM would store 0.0 for an explicit None (unknown price)
    cost_estimate: Mapped[float | None] = mapped_column(Float, nullable=True)
    execution_time_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)

    # Error information
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    step_metadata: Mapped[dict[str, Any] | None] = mapped_column(JSONType(), nullable=True)

    # Timing
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, server_default=func.now())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    # Relationships
    flow_run: Mapped[FlowRunModel] = relationship("FlowRunModel", back_populates="steps")


# the tables, for Core statements (the store's write path)
flow_runs = cast(Table, FlowRunModel.__table__)
flow_step_runs = cast(Table, FlowStepRunModel.__table__)
llm_requests = cast(Table, LLMRequestModel.__table__)
llm_cache = cast(Table, LLMCacheModel.__table__)
