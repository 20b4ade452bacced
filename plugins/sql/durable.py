"""The durable-execution writes (cancel requests, crash marking, resume), as writer "call" actions.

Each function runs inside the writer thread's transaction with its cursor and compiled-statement
cache: ``fn(cursor, dml, *args) -> result``. The cancel flag lives in ``flow_runs.cancel_requested``
so a ``flow cancel`` in one process reaches a run in another; the runner reads it after each step
and at each heartbeat.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

from flow_engine.errors import NotFoundError
from flow_engine.storage import RunStatus
from sqlalchemy import bindparam, delete, or_, select

from .models import flow_runs, flow_step_runs


def cancel_flag(cursor: Any, dml: Any, run_id: uuid.UUID) -> bool:
    """Was ``flow cancel`` asked for this run (by any process)? Read after each step and heartbeat."""
    sql, params = dml.statement(
        "cancel_flag",
        lambda: select(flow_runs.c.cancel_requested).where(flow_runs.c.id == bindparam("run_id")),
        {"run_id": run_id},
    )
    cursor.execute(sql, params)
    row = cursor.fetchone()
    return bool(row and row[0])


def delete_unfinished_steps(cursor: Any, dml: Any, run_id: uuid.UUID) -> None:
    sql, params = dml.statement(
        "delete_unfinished_steps",
        lambda: delete(flow_step_runs).where(
            flow_step_runs.c.flow_run_id == bindparam("run_id"),
            flow_step_runs.c.status != RunStatus.COMPLETED.value,
        ),
        {"run_id": run_id},
    )
    cursor.execute(sql, params)


def request_cancel(cursor: Any, dml: Any, run_id: uuid.UUID, now: datetime) -> str:
    sql, params = dml.statement(
        "run_status",
        lambda: select(flow_runs.c.status).where(flow_runs.c.id == bindparam("run_id")),
        {"run_id": run_id},
    )
    cursor.execute(sql, params)
    row = cursor.fetchone()
    if row is None:
        raise NotFoundError(f"no run with id {run_id}")
    status = row[0]
    if status == RunStatus.PENDING.value:
        status = RunStatus.CANCELLED.value
        cursor.execute(*dml.update(flow_runs, run_id, {"status": status, "completed_at": now}))
    elif status == RunStatus.RUNNING.value:
        cursor.execute(*dml.update(flow_runs, run_id, {"cancel_requested": True}))
    return str(status)


def mark_crashed(cursor: Any, dml: Any, stale_before: datetime, run_id: uuid.UUID | None) -> list[uuid.UUID]:
    def build() -> Any:
        stmt = select(flow_runs.c.id, flow_runs.c.last_heartbeat).where(
            flow_runs.c.status == RunStatus.RUNNING.value,
            or_(flow_runs.c.last_heartbeat.is_(None), flow_runs.c.last_heartbeat < bindparam("stale_before")),
        )
        return stmt.where(flow_runs.c.id == bindparam("run_id")) if run_id is not None else stmt

    key = "stale_runs" if run_id is None else "stale_run"
    sql, params = dml.statement(key, build, {"stale_before": stale_before, "run_id": run_id})
    cursor.execute(sql, params)
    rows = cursor.fetchall()
    to_id = flow_runs.c.id.type.dialect_impl(dml.dialect).result_processor(dml.dialect, None)
    to_time = flow_runs.c.last_heartbeat.type.dialect_impl(dml.dialect).result_processor(dml.dialect, None)
    marked: list[uuid.UUID] = []
    for raw_id, raw_heartbeat in rows:
        stale_id = cast(uuid.UUID, to_id(raw_id) if to_id else raw_id)
        heartbeat = to_time(raw_heartbeat) if to_time else raw_heartbeat
        changes = {
            "status": RunStatus.CRASHED.value,
            "error_message": f"no heartbeat since {heartbeat}; its process probably died",
        }
        cursor.execute(*dml.update(flow_runs, stale_id, changes))
        marked.append(stale_id)
    return marked
