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

from sqlalchemy import and_, bindparam, case, delete, or_, select, update

from flow_engine.errors import NotFoundError
from flow_engine.plugin import RunStatus
from flow_engine.storage import IN_FLIGHT, INTERRUPTED, INTERRUPTED_MESSAGE

from .models import flow_runs, flow_step_runs, llm_requests


def cancel_flag(cursor: Any, dml: Any, run_id: uuid.UUID) -> bool:
    """Was ``flow cancel`` asked for this run or a run it is a child of (by any process)? Read after
    each step and heartbeat, so a cancelled root run stops its running child at the child's next step."""
    to_id = flow_runs.c.parent_run_id.type.dialect_impl(dml.dialect).result_processor(dml.dialect, None)
    current: uuid.UUID | None = run_id
    for _ in range(100):  # a parent chain, never a cycle; bounded anyway
        if current is None:
            return False
        sql, params = dml.statement(
            "cancel_flag_chain",
            lambda: select(flow_runs.c.cancel_requested, flow_runs.c.parent_run_id).where(
                flow_runs.c.id == bindparam("run_id")
            ),
            {"run_id": current},
        )
        cursor.execute(sql, params)
        row = cursor.fetchone()
        if row is None:
            return False
        if row[0]:
            return True
        current = to_id(row[1]) if to_id and row[1] is not None else row[1]
    return False


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


def interrupt_in_flight(cursor: Any, dml: Any, run_id: uuid.UUID) -> None:
    """The run's LLM requests still ``in_flight`` were cut short with their process: ``interrupted``."""
    sql, params = dml.statement(
        "interrupt_in_flight",
        lambda: (
            update(llm_requests)
            .where(llm_requests.c.flow_run_id == bindparam("run_id"), llm_requests.c.status == IN_FLIGHT)
            .values(status=INTERRUPTED, error_message=INTERRUPTED_MESSAGE)
        ),
        {"run_id": run_id},
    )
    cursor.execute(sql, params)


_CANCELLED_AT_ONCE = {
    RunStatus.PENDING.value: "cancelled (flow cancel) before it started",
    RunStatus.CRASHED.value: "cancelled (flow cancel) after its process had died",
}


def request_cancel(cursor: Any, dml: Any, run_id: uuid.UUID, now: datetime) -> str:
    """A running run gets the flag its process reads at the next step boundary; a pending or crashed
    run (nobody executes it) is cancelled at once - conditionally, so a worker that claims it at the
    same moment wins or loses cleanly. Returns the status after the request."""
    c = flow_runs.c
    for _ in range(3):  # the status may change under us (a worker claims the run): read it again
        sql, params = dml.statement(
            "run_status", lambda: select(c.status).where(c.id == bindparam("run_id")), {"run_id": run_id}
        )
        cursor.execute(sql, params)
        row = cursor.fetchone()
        if row is None:
            raise NotFoundError(f"no run with id {run_id}")
        status = str(row[0])
        if status == RunStatus.RUNNING.value:
            cursor.execute(*dml.update(flow_runs, run_id, {"cancel_requested": True}))
            return status
        if status not in _CANCELLED_AT_ONCE:  # completed, failed or cancelled already
            return status
        sql, params = dml.statement(
            "cancel_at_once",
            lambda: (
                update(flow_runs)
                .where(c.id == bindparam("p_run_id"), c.status == bindparam("p_status"))
                .values(
                    status=RunStatus.CANCELLED.value,
                    completed_at=bindparam("p_now", type_=c.completed_at.type),
                    error_message=bindparam("p_message", type_=c.error_message.type),
                )
            ),
            {"p_run_id": run_id, "p_status": status, "p_now": now, "p_message": _CANCELLED_AT_ONCE[status]},
        )
        cursor.execute(sql, params)
        if cursor.rowcount == 1:
            return RunStatus.CANCELLED.value
    return status


def _claim(taken_when: Any, **also: Any) -> Any:
    """The UPDATE of a claim: the run ``p_run_id``, if ``taken_when`` holds, becomes running, claimed by
    ``p_owner``, with its heartbeat ``p_now`` (and the ``also`` values)."""
    c = flow_runs.c
    return (
        update(flow_runs)
        .where(c.id == bindparam("p_run_id"), taken_when)
        .values(
            status=RunStatus.RUNNING.value,
            claimed_by=bindparam("p_owner", type_=c.claimed_by.type),
            last_heartbeat=bindparam("p_now", type_=c.last_heartbeat.type),
            **also,
        )
    )


def _claimed(cursor: Any, dml: Any, key: str, build: Any, values: dict[str, Any]) -> bool:
    sql, params = dml.statement(key, build, values)
    cursor.execute(sql, params)
    return bool(cursor.rowcount == 1)


def claim_run(
    cursor: Any, dml: Any, run_id: uuid.UUID, owner: str, stale_before: datetime, now: datetime
) -> bool:
    """The atomic claim of a submitted run: ONE conditional UPDATE, so of two workers that try at once
    exactly one matches the row (SQLite: the writer's ``BEGIN IMMEDIATE`` serializes them; PostgreSQL:
    the second UPDATE waits for the first's row lock, then re-checks the WHERE clause and finds the run
    running with a fresh heartbeat)."""
    c = flow_runs.c

    def build() -> Any:
        claimable = or_(
            c.status == RunStatus.PENDING.value,
            c.status == RunStatus.CRASHED.value,
            c.status == RunStatus.WAITING.value,
            and_(
                c.status == RunStatus.RUNNING.value,
                or_(c.last_heartbeat.is_(None), c.last_heartbeat < bindparam("p_stale_before")),
            ),
        )
        started = bindparam("p_started", type_=c.started_at.type)
        return _claim(claimable, started_at=case((c.started_at.is_(None), started), else_=c.started_at))

    values = {"p_run_id": run_id, "p_owner": owner, "p_stale_before": stale_before, "p_now": now}
    values["p_started"] = now
    return _claimed(cursor, dml, "claim_run", build, values)


def claim_ended_run(cursor: Any, dml: Any, run_id: uuid.UUID, owner: str, now: datetime) -> bool:
    """The atomic take of a failed or cancelled run to resume it: one conditional UPDATE, as
    ``claim_run``."""
    c = flow_runs.c

    def build() -> Any:
        return _claim(or_(c.status == RunStatus.FAILED.value, c.status == RunStatus.CANCELLED.value))

    values = {"p_run_id": run_id, "p_owner": owner, "p_now": now}
    return _claimed(cursor, dml, "claim_ended_run", build, values)


def stale_runs_query(one_run: bool = False) -> Any:
    """Running runs whose heartbeat is older than ``:stale_before`` (or missing); a range scan of
    ``ix_flow_runs_status_last_heartbeat`` (tests check the plan)."""
    stmt = select(flow_runs.c.id, flow_runs.c.last_heartbeat).where(
        flow_runs.c.status == RunStatus.RUNNING.value,
        or_(flow_runs.c.last_heartbeat.is_(None), flow_runs.c.last_heartbeat < bindparam("stale_before")),
    )
    return stmt.where(flow_runs.c.id == bindparam("run_id")) if one_run else stmt


def mark_crashed(cursor: Any, dml: Any, stale_before: datetime, run_id: uuid.UUID | None) -> list[uuid.UUID]:
    key = "stale_runs" if run_id is None else "stale_run"
    build = lambda: stale_runs_query(run_id is not None)  # noqa: E731
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
        interrupt_in_flight(cursor, dml, stale_id)
        marked.append(stale_id)
    return marked
