"""Repository layer for flow execution data access (the seed plan's ``repo.py``), on an ORM session.

The store reads through these; applications embedding flow-engine can use them directly with their own
``Session``. Lists of runs are newest first with ``limit``/``offset``; steps come in ``step_order``.
Writes from the running engine do not come through here (see ``store.py``): ``create``/``save`` are
for code that manages rows itself.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import desc, or_, select
from sqlalchemy.orm import Session

from flow_engine.plugin import RunStatus

from .models import FlowRunModel, FlowStepRunModel, LLMRequestModel

__all__ = ["FlowRunRepo", "FlowStepRunRepo", "LLMRequestRepo"]

_HEX = frozenset("0123456789abcdef")


class FlowRunRepo:
    """Repository for FlowRun database operations."""

    def __init__(self, session: Session):
        self.s = session

    def by_id(self, flow_run_id: uuid.UUID) -> FlowRunModel | None:
        return self.s.get(FlowRunModel, flow_run_id)

    def create(self, flow_run: FlowRunModel) -> FlowRunModel:
        self.s.add(flow_run)
        self.s.flush()
        return flow_run

    def save(self, flow_run: FlowRunModel) -> FlowRunModel:
        self.s.add(flow_run)
        return flow_run

    def by_user_id(self, user_id: uuid.UUID, limit: int = 50, offset: int = 0) -> list[FlowRunModel]:
        return self.query(user_id=user_id, limit=limit, offset=offset)

    def by_status(self, status: str, limit: int = 100, offset: int = 0) -> list[FlowRunModel]:
        return self.query(status=status, limit=limit, offset=offset)

    def by_flow_name(self, flow_name: str, limit: int = 50, offset: int = 0) -> list[FlowRunModel]:
        return self.query(flow_name=flow_name, limit=limit, offset=offset)

    def children(self, parent_run_id: uuid.UUID) -> list[FlowRunModel]:
        """Child runs of a run, in the order they started."""
        stmt = (
            select(FlowRunModel)
            .where(FlowRunModel.parent_run_id == parent_run_id)
            .order_by(FlowRunModel.created_at, FlowRunModel.id)
        )
        return list(self.s.execute(stmt).scalars())

    def query(
        self,
        *,
        flow_name: str | None = None,
        status: str | None = None,
        user_id: uuid.UUID | None = None,
        parent_run_id: uuid.UUID | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[FlowRunModel]:
        """Runs matching every given filter, newest first."""
        stmt = select(FlowRunModel)
        if flow_name is not None:
            stmt = stmt.where(FlowRunModel.flow_name == flow_name)
        if status is not None:
            stmt = stmt.where(FlowRunModel.status == status)
        if user_id is not None:
            stmt = stmt.where(FlowRunModel.user_id == user_id)
        if parent_run_id is not None:
            stmt = stmt.where(FlowRunModel.parent_run_id == parent_run_id)
        stmt = stmt.order_by(desc(FlowRunModel.created_at), desc(FlowRunModel.id)).limit(limit).offset(offset)
        return list(self.s.execute(stmt).scalars())

    def ids_with_prefix(self, prefix: str, limit: int = 2) -> list[uuid.UUID]:
        """Ids whose hex form (dashes ignored) starts with ``prefix``: a range of the primary key
        (``prefix000...`` to ``prefixfff...``), the same order on PostgreSQL's uuid and SQLite's hex text."""
        bounds = prefix_range(prefix)
        if bounds is None:
            return []
        low, high = bounds
        stmt = (
            select(FlowRunModel.id)
            .where(FlowRunModel.id >= low, FlowRunModel.id <= high)
            .order_by(FlowRunModel.id)
            .limit(limit)
        )
        return list(self.s.execute(stmt).scalars())

    def stale(
        self, heartbeat_before: datetime, pending_before: datetime | None = None, limit: int = 1000
    ) -> list[FlowRunModel]:
        """Runs whose process probably died: running with a heartbeat older than ``heartbeat_before``
        (or none), and, with ``pending_before``, pending (submitted) since before then. Two range
        scans of (status, last_heartbeat) and (status, created_at), never a scan of the table."""
        running = (
            select(FlowRunModel)
            .where(
                FlowRunModel.status == RunStatus.RUNNING.value,
                or_(FlowRunModel.last_heartbeat.is_(None), FlowRunModel.last_heartbeat < heartbeat_before),
            )
            .limit(limit)
        )
        found = list(self.s.execute(running).scalars())
        if pending_before is not None:
            pending = (
                select(FlowRunModel)
                .where(
                    FlowRunModel.status == RunStatus.PENDING.value, FlowRunModel.created_at < pending_before
                )
                .limit(limit)
            )
            found += self.s.execute(pending).scalars()
        return found


def prefix_range(prefix: str) -> tuple[uuid.UUID, uuid.UUID] | None:
    """The smallest and largest id starting with the hex ``prefix`` (dashes ignored); None if it is not
    hex or longer than an id."""
    wanted = prefix.strip().lower().replace("-", "")
    if not wanted or len(wanted) > 32 or not set(wanted) <= _HEX:
        return None
    return uuid.UUID(wanted.ljust(32, "0")), uuid.UUID(wanted.ljust(32, "f"))


class FlowStepRunRepo:
    """Repository for FlowStepRun database operations."""

    def __init__(self, session: Session):
        self.s = session

    def by_id(self, step_run_id: uuid.UUID) -> FlowStepRunModel | None:
        return self.s.get(FlowStepRunModel, step_run_id)

    def create(self, step_run: FlowStepRunModel) -> FlowStepRunModel:
        self.s.add(step_run)
        self.s.flush()
        return step_run

    def save(self, step_run: FlowStepRunModel) -> FlowStepRunModel:
        self.s.add(step_run)
        return step_run

    def by_flow_run_id(self, flow_run_id: uuid.UUID) -> list[FlowStepRunModel]:
        return list(
            self.s.execute(
                select(FlowStepRunModel)
                .where(FlowStepRunModel.flow_run_id == flow_run_id)
                .order_by(FlowStepRunModel.step_order)
            ).scalars()
        )


class LLMRequestRepo:
    """Recorded LLM call attempts, oldest first."""

    def __init__(self, session: Session):
        self.s = session

    def by_id(self, request_id: uuid.UUID) -> LLMRequestModel | None:
        return self.s.get(LLMRequestModel, request_id)

    def find(
        self, *, flow_run_id: uuid.UUID | None = None, step_run_id: uuid.UUID | None = None
    ) -> list[LLMRequestModel]:
        stmt = select(LLMRequestModel)
        if flow_run_id is not None:
            stmt = stmt.where(LLMRequestModel.flow_run_id == flow_run_id)
        if step_run_id is not None:
            stmt = stmt.where(LLMRequestModel.step_run_id == step_run_id)
        stmt = stmt.order_by(LLMRequestModel.created_at, LLMRequestModel.attempt, LLMRequestModel.id)
        return list(self.s.execute(stmt).scalars())
