"""The ``memory://`` store: the store contract; a cancel request reaches the running run and its children."""

from __future__ import annotations

from datetime import timedelta

import pytest

from flow_engine.plugin import RunRecord, RunStatus, StepRecord
from flow_engine.plugins.memory import MemoryStore
from flow_engine.storage import utcnow
from flow_engine.testing import RunStoreContract


async def started_run(store: MemoryStore, parent: RunRecord | None = None) -> tuple[RunRecord, StepRecord]:
    run = RunRecord(
        flow_name="f", status=RunStatus.RUNNING.value, parent_run_id=parent.id if parent else None
    )
    await store.create_run(run)
    step = StepRecord(flow_run_id=run.id, step_name="s", step_key="s", step_type="python", step_order=1)
    await store.start_step(step, {"current_step": "s"})
    return run, step


async def test_a_step_learns_of_a_cancel_of_its_run_or_of_a_parent_run():
    store = MemoryStore()
    parent, parent_step = await started_run(store)
    child, child_step = await started_run(store, parent)
    other, other_step = await started_run(store)
    done = {"status": RunStatus.COMPLETED.value}
    assert await store.finish_step(child_step.id, done, child.id, {}) is False  # nothing requested yet
    assert await store.heartbeat(child.id, utcnow()) is False

    assert await store.request_cancel(parent.id) == RunStatus.RUNNING
    assert await store.finish_step(parent_step.id, done, parent.id, {}) is True
    assert await store.finish_step(child_step.id, done, child.id, {}) is True  # through its parent
    assert await store.heartbeat(child.id, utcnow()) is True
    assert await store.finish_step(other_step.id, done, other.id, {}) is False  # an unrelated run
    assert await store.heartbeat(other.id, utcnow()) is False


async def test_the_changes_it_puts_off_are_seen_by_the_recovery_scan_and_prune():
    """``memory://`` applies a step's and its run's changes when next read: the two reads outside the
    contract's required methods see them too."""
    store = MemoryStore()
    run, _ = await started_run(store)
    background = {"background": {"executor": "celery"}}
    await store.update_run(
        run.id, {"status": "pending", "execution_mode": "background", "flow_metadata": background}
    )
    later = utcnow() + timedelta(minutes=1)
    assert [r.id for r in store.list_orphaned_runs("celery", later, pending_before=later)] == [run.id]
    await store.update_run(run.id, {"status": RunStatus.COMPLETED.value})
    assert store.prune_runs(later, dry_run=True).runs == 1


class TestMemoryStoreContract(RunStoreContract):
    """The ``memory://`` store passes the contract every backend passes."""

    @pytest.fixture
    def store(self) -> MemoryStore:
        return MemoryStore()
