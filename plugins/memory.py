"""Storage backend ``memory://``: runs kept in this process only. For tests, benchmarks and throwaway runs."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from flow_engine.hookspecs import hookimpl
from flow_engine.storage import (
    PRUNABLE_STATUSES,
    PRUNE_BATCH,
    LLMRequestRecord,
    PruneResult,
    RunRecord,
    RunStatus,
    RunStore,
    StepRecord,
    StorageBackendInfo,
    claimable,
    prunable_statuses,
    utcnow,
)

_FIELDS = {cls: frozenset(cls.model_fields) for cls in (RunRecord, StepRecord, LLMRequestRecord)}


class MemoryStore(RunStore):
    def __init__(self, url: str = "memory://"):
        self.url = url
        self._runs: dict[uuid.UUID, RunRecord] = {}
        self._steps: dict[uuid.UUID, StepRecord] = {}
        self._requests: list[LLMRequestRecord] = []
        self._cancel_requested: set[uuid.UUID] = set()
        self._lock = threading.Lock()

    async def create_run(self, run: RunRecord) -> None:
        with self._lock:
            self._runs[run.id] = run.model_copy()  # a submitted run's record also goes to its executor

    def _apply(self, record: Any, changes: dict[str, Any]) -> None:
        fields = _FIELDS[type(record)]
        for key in changes:
            if key not in fields:
                raise KeyError(f"{type(record).__name__} has no field '{key}'")
        # records are not validated on assignment: setting the attributes is all pydantic would do
        record.__dict__.update(changes)

    async def update_run(self, run_id: uuid.UUID, changes: dict[str, Any]) -> None:
        with self._lock:
            self._apply(self._runs[run_id], changes)

    async def start_step(self, step: StepRecord, run_changes: dict[str, Any]) -> None:
        with self._lock:
            self._steps[step.id] = step
            self._apply(self._runs[step.flow_run_id], run_changes)

    async def finish_step(
        self, step_id: uuid.UUID, step_changes: dict[str, Any], run_id: uuid.UUID, run_changes: dict[str, Any]
    ) -> bool:
        with self._lock:
            self._apply(self._steps[step_id], step_changes)
            self._apply(self._runs[run_id], run_changes)
            return self._cancelled(run_id)

    def _cancelled(self, run_id: uuid.UUID | None) -> bool:
        """Was a cancel requested for this run or a run it is a child of? (Called under the lock.)"""
        if not self._cancel_requested:  # the common case, asked after every step: no lookups
            return False
        for _ in range(100):
            if run_id is None or run_id not in self._runs:
                return False
            if run_id in self._cancel_requested:
                return True
            run_id = self._runs[run_id].parent_run_id
        return False

    async def heartbeat(self, run_id: uuid.UUID, at: datetime) -> bool:
        with self._lock:
            self._runs[run_id].last_heartbeat = at
            return self._cancelled(run_id)

    async def prepare_resume(self, run_id: uuid.UUID, run_changes: dict[str, Any]) -> None:
        with self._lock:
            self._steps = {
                k: s
                for k, s in self._steps.items()
                if s.flow_run_id != run_id or s.status == RunStatus.COMPLETED
            }
            self._cancel_requested.discard(run_id)
            self._apply(self._runs[run_id], run_changes)

    async def request_cancel(self, run_id: uuid.UUID) -> str:
        with self._lock:
            run = self._runs[run_id]
            if run.status in (RunStatus.PENDING, RunStatus.CRASHED):
                when = (
                    "before it started" if run.status == RunStatus.PENDING else "after its process had died"
                )
                run.status, run.completed_at = RunStatus.CANCELLED.value, utcnow()
                run.error_message = f"cancelled (flow cancel) {when}"
            elif run.status == RunStatus.RUNNING:
                self._cancel_requested.add(run_id)
            return run.status

    async def mark_crashed(self, stale_before: datetime, run_id: uuid.UUID | None = None) -> list[uuid.UUID]:
        marked = []
        with self._lock:
            for run in self._runs.values():
                stale = run.last_heartbeat is None or run.last_heartbeat < stale_before
                if run.status == RunStatus.RUNNING and stale and run_id in (None, run.id):
                    run.status = RunStatus.CRASHED.value
                    run.error_message = f"no heartbeat since {run.last_heartbeat}; its process probably died"
                    marked.append(run.id)
        return marked

    async def claim_run(self, run_id: uuid.UUID, owner: str, stale_before: datetime) -> bool:
        with self._lock:
            run = self._runs.get(run_id)
            if run is None or not claimable(run, stale_before):
                return False
            now = utcnow()
            run.status, run.claimed_by, run.last_heartbeat = RunStatus.RUNNING.value, owner, now
            run.started_at = run.started_at or now
            return True

    async def record_llm_request(self, request: LLMRequestRecord) -> None:
        with self._lock:
            self._requests.append(request)

    def prune_runs(
        self,
        before: datetime,
        *,
        statuses: Sequence[str] | None = None,
        flow_name: str | None = None,
        dry_run: bool = False,
        batch_size: int = PRUNE_BATCH,
        on_batch: Callable[[list[uuid.UUID]], None] | None = None,
    ) -> PruneResult:
        wanted = set(prunable_statuses(statuses))
        result = PruneResult(space_note="memory:// keeps nothing on disk")
        with self._lock:
            roots = sorted(
                (
                    r
                    for r in self._runs.values()
                    if r.parent_run_id is None
                    and r.status in wanted
                    and r.created_at < before
                    and (flow_name is None or r.flow_name == flow_name)
                ),
                key=lambda r: (r.created_at, r.id.hex),
            )
            children: dict[uuid.UUID, list[uuid.UUID]] = {}
            for run in self._runs.values():
                if run.parent_run_id is not None:
                    children.setdefault(run.parent_run_id, []).append(run.id)
            for start in range(0, len(roots), max(1, batch_size)):
                batch: list[uuid.UUID] = []
                for root in roots[start : start + batch_size]:
                    tree, level = [root.id], [root.id]
                    while level:
                        level = [c for parent in level for c in children.get(parent, [])]
                        tree += level
                    if all(self._runs[i].status in PRUNABLE_STATUSES for i in tree):
                        batch += tree
                        result.runs += 1
                        result.child_runs += len(tree) - 1
                gone = set(batch)
                result.steps += sum(1 for s in self._steps.values() if s.flow_run_id in gone)
                result.llm_requests += sum(1 for r in self._requests if r.flow_run_id in gone)
                if not dry_run:
                    self._steps = {k: s for k, s in self._steps.items() if s.flow_run_id not in gone}
                    self._requests = [r for r in self._requests if r.flow_run_id not in gone]
                    for run_id in batch:
                        del self._runs[run_id]
                        self._cancel_requested.discard(run_id)
                if batch and on_batch is not None:
                    on_batch(batch)
        return result

    def get_run(self, run_id: uuid.UUID) -> RunRecord | None:
        run = self._runs.get(run_id)
        return run.model_copy() if run else None

    def list_runs(
        self,
        *,
        flow_name: str | None = None,
        status: str | None = None,
        user_id: uuid.UUID | None = None,
        parent_run_id: uuid.UUID | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[RunRecord]:
        runs = [
            r
            for r in self._runs.values()
            if (flow_name is None or r.flow_name == flow_name)
            and (status is None or r.status == status)
            and (user_id is None or r.user_id == user_id)
            and (parent_run_id is None or r.parent_run_id == parent_run_id)
        ]
        runs.sort(key=lambda r: r.created_at, reverse=True)
        return [r.model_copy() for r in runs[offset : offset + limit]]

    def list_steps(self, run_id: uuid.UUID) -> list[StepRecord]:
        steps = [s for s in self._steps.values() if s.flow_run_id == run_id]
        return [s.model_copy() for s in sorted(steps, key=lambda s: s.step_order)]

    def list_llm_requests(
        self, *, flow_run_id: uuid.UUID | None = None, step_run_id: uuid.UUID | None = None
    ) -> list[LLMRequestRecord]:
        return [
            r.model_copy()
            for r in self._requests
            if (flow_run_id is None or r.flow_run_id == flow_run_id)
            and (step_run_id is None or r.step_run_id == step_run_id)
        ]

    def run_ids_with_prefix(self, prefix: str, limit: int = 2) -> list[uuid.UUID]:
        wanted = prefix.replace("-", "")
        return [rid for rid in self._runs if rid.hex.startswith(wanted)][:limit]


@hookimpl
def register_storage_backends(register: Any) -> None:
    register(StorageBackendInfo("memory", ("memory",), MemoryStore, "runs kept in this process only"))
