"""The tests every ``RunStore`` backend must pass, for any backend to run in one line.

Subclass :class:`RunStoreContract` in a test module and give it a ``store`` fixture that returns a
fresh, empty store (in the class, or in a ``conftest.py``)::

    from flow_engine.testing.store_contract import RunStoreContract

    class TestMyStore(RunStoreContract):
        @pytest.fixture
        def store(self):
            return MyStore("mine://test")

The tests are plain (synchronous) pytest tests that run the store's coroutines with ``asyncio.run``,
so they need no async pytest plugin. They cover what the runner and the CLI rely on: records that come
back as written, change sets, filters and order of the reads, steps, LLM requests, heartbeat, cancel,
resume, crash marking, the atomic claim, and run-id prefixes.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from flow_engine.errors import NotFoundError, StorageError, UsageError
from flow_engine.storage import (
    IN_FLIGHT,
    INTERRUPTED,
    INTERRUPTED_MESSAGE,
    CacheEntry,
    LLMRequestRecord,
    RunFilter,
    RunRecord,
    RunStatus,
    RunStore,
    StepChanges,
    StepRecord,
    utcnow,
)

__all__ = ["RunStoreContract"]

T0 = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def _async(test: Callable[[Any, RunStore], Coroutine[Any, Any, None]]) -> Callable[[Any, RunStore], None]:
    """One event loop per test, without an async pytest plugin."""

    def run_test(self: Any, store: RunStore) -> None:
        asyncio.run(test(self, store))

    run_test.__name__, run_test.__qualname__ = test.__name__, test.__qualname__
    run_test.__doc__ = test.__doc__
    return run_test


def run_record(**fields: Any) -> RunRecord:
    return RunRecord(**{"flow_name": "contract", **fields})


def step_record(run: RunRecord, key: str, order: int, **fields: Any) -> StepRecord:
    values = {"step_name": key, "step_key": key, "step_type": "python", "step_order": order, **fields}
    return StepRecord(flow_run_id=run.id, **values)


async def running_run(store: RunStore, **fields: Any) -> RunRecord:
    now = utcnow()
    values = {"status": RunStatus.RUNNING.value, "started_at": now, "last_heartbeat": now, **fields}
    run = run_record(**values)
    await store.create_run(run)
    return run


class RunStoreContract:
    """Mix into a ``Test*`` class that provides a ``store`` fixture (a fresh, empty ``RunStore``)."""

    # -- runs -------------------------------------------------------------------------------
    @_async
    async def test_a_run_comes_back_as_written(self, store: RunStore) -> None:
        parent = run_record()
        await store.create_run(parent)
        run = run_record(
            user_id=uuid.uuid4(),
            parent_run_id=parent.id,
            run_key="child#1",
            status=RunStatus.RUNNING.value,
            execution_mode="background",
            current_step="summarize",
            step_progress=2,
            total_steps=5,
            progress_percentage=40.0,
            created_at=T0,
            started_at=T0 + timedelta(seconds=1),
            last_heartbeat=T0 + timedelta(seconds=2),
            total_tokens=1234,
            total_cost=0.0123,
            unpriced_calls=1,
            execution_time_ms=987,
            inputs={"text": "héllo", "n": [1, 2.5, None, {"deep": True}]},
            flow_metadata={"tags": ["a"]},
            claimed_by="worker-1",
        )
        await store.create_run(run)
        stored = store.get_run(run.id)
        assert stored == run
        assert stored is not None and stored.created_at == T0  # the same instant, microseconds kept

    @_async
    async def test_an_unknown_run_reads_as_none(self, store: RunStore) -> None:
        assert store.get_run(uuid.uuid4()) is None
        assert store.list_steps(uuid.uuid4()) == []
        assert store.list_llm_requests(flow_run_id=uuid.uuid4()) == []

    @_async
    async def test_a_second_run_with_the_same_id_is_refused(self, store: RunStore) -> None:
        run = run_record()
        await store.create_run(run)
        with pytest.raises(StorageError):
            await store.create_run(run_record(id=run.id, flow_name="other"))
        stored = store.get_run(run.id)
        assert stored is not None and stored.flow_name == "contract"

    @_async
    async def test_a_batch_has_one_run_per_line(self, store: RunStore) -> None:
        first = run_record(batch_id="b1", batch_line=3)
        await store.create_run(first)
        with pytest.raises(StorageError):
            await store.create_run(run_record(batch_id="b1", batch_line=3))
        for other in (
            run_record(batch_id="b1", batch_line=4),
            run_record(batch_id="b2", batch_line=3),
            run_record(batch_id="b1"),
            run_record(batch_id="b1"),  # a run of the batch with no line: never a duplicate
        ):
            await store.create_run(other)
        assert len(store.find_runs(RunFilter(batch_id="b1"))) == 4
        [found] = store.find_runs(RunFilter(batch_id="b1", batch_line=3))
        assert found.id == first.id and found.batch_line == 3

    @_async
    async def test_records_must_name_existing_runs(self, store: RunStore) -> None:
        with pytest.raises(StorageError):
            await store.create_run(run_record(parent_run_id=uuid.uuid4()))
        with pytest.raises(StorageError):
            await store.start_step(step_record(run_record(), "s", 1, status=RunStatus.COMPLETED.value), {})
        with pytest.raises(StorageError):
            await store.record_llm_request(LLMRequestRecord(flow_run_id=uuid.uuid4(), model="m"))
        assert store.list_runs() == [] and store.list_llm_requests() == []

    @_async
    async def test_reads_hand_out_copies(self, store: RunStore) -> None:
        run = run_record()
        await store.create_run(run)
        first = store.get_run(run.id)
        assert first is not None
        first.status = "changed by the caller"
        listed = store.list_runs()[0]
        listed.flow_name = "changed too"
        stored = store.get_run(run.id)
        assert stored is not None and (stored.status, stored.flow_name) == ("pending", "contract")

    @_async
    async def test_update_run_changes_only_the_named_columns(self, store: RunStore) -> None:
        run = run_record(inputs={"x": 1})
        await store.create_run(run)
        done = T0 + timedelta(minutes=1)
        await store.update_run(
            run.id,
            {
                "status": RunStatus.COMPLETED.value,
                "completed_at": done,
                "outputs": {"answer": [1, "two"]},
                "current_step": None,
                "total_cost": 0.5,
            },
        )
        await store.update_run(run.id, {})  # nothing to change: no error
        stored = store.get_run(run.id)
        expected = run.model_copy(
            update={
                "status": "completed",
                "completed_at": done,
                "outputs": {"answer": [1, "two"]},
                "total_cost": 0.5,
            }
        )
        assert stored == expected

    @_async
    async def test_an_unknown_column_is_refused_before_anything_is_written(self, store: RunStore) -> None:
        run = run_record()
        await store.create_run(run)
        with pytest.raises(KeyError, match="nonsense"):
            await store.update_run(run.id, {"status": "failed", "nonsense": 1})  # type: ignore[typeddict-unknown-key]
        stored = store.get_run(run.id)
        assert stored is not None and stored.status == RunStatus.PENDING.value

    @_async
    async def test_updating_an_unknown_run_is_a_storage_error(self, store: RunStore) -> None:
        with pytest.raises(StorageError):
            await store.update_run(uuid.uuid4(), {"status": RunStatus.FAILED.value})

    @_async
    async def test_list_runs_filters_and_orders_newest_first(self, store: RunStore) -> None:
        user = uuid.uuid4()
        root = run_record(flow_name="a", created_at=T0)
        child = run_record(flow_name="b", parent_run_id=root.id, created_at=T0 + timedelta(seconds=1))
        mine = run_record(flow_name="a", user_id=user, status="failed", created_at=T0 + timedelta(seconds=2))
        last = run_record(flow_name="b", status="failed", created_at=T0 + timedelta(seconds=3))
        for run in (root, last, child, mine):  # stored out of order (a parent before its child)
            await store.create_run(run)

        def ids(**filters: Any) -> list[uuid.UUID]:
            return [r.id for r in store.list_runs(**filters)]

        assert ids() == [last.id, mine.id, child.id, root.id]
        assert ids(flow_name="a") == [mine.id, root.id]
        assert ids(status="failed") == [last.id, mine.id]
        assert ids(status="failed", flow_name="b") == [last.id]
        assert ids(user_id=user) == [mine.id]
        assert ids(parent_run_id=root.id) == [child.id]
        assert ids(limit=2) == [last.id, mine.id]
        assert ids(limit=2, offset=1) == [mine.id, child.id]
        assert ids(flow_name="nobody") == []

    # -- steps ------------------------------------------------------------------------------
    @_async
    async def test_a_step_starts_and_finishes_with_its_run(self, store: RunStore) -> None:
        run = await running_run(store, total_steps=2)
        step = step_record(run, "summarize", 1, inputs={"text": "t"})
        await store.start_step(step, {"current_step": "summarize", "last_heartbeat": T0})
        # a running step may be written lazily: it is stored by the run's next awaited write at the latest
        await store.update_run(run.id, {"progress_percentage": 0.0})
        [started] = store.list_steps(run.id)
        assert started == step and started.status == RunStatus.RUNNING.value
        stored = store.get_run(run.id)
        assert stored is not None and (stored.current_step, stored.last_heartbeat) == ("summarize", T0)

        request = LLMRequestRecord(flow_run_id=run.id, step_run_id=step.id, model="m")
        await store.record_llm_request(request)
        request_id = request.id
        cancel = await store.finish_step(
            step.id,
            {
                "status": RunStatus.COMPLETED.value,
                "outputs": {"output_content": {"summary": "s"}},
                "tokens_used": 42,
                "cost_estimate": None,
                "execution_time_ms": 12,
                "completed_at": T0,
                "llm_request_id": request_id,
                "step_metadata": {"model": "m"},
            },
            run.id,
            {"step_progress": 1, "total_tokens": 42, "unpriced_calls": 1, "progress_percentage": 50.0},
        )
        assert not cancel
        [finished] = store.list_steps(run.id)
        assert finished == step.model_copy(
            update={
                "status": "completed",
                "outputs": {"output_content": {"summary": "s"}},
                "tokens_used": 42,
                "cost_estimate": None,
                "execution_time_ms": 12,
                "completed_at": T0,
                "llm_request_id": request_id,
                "step_metadata": {"model": "m"},
            }
        )
        stored = store.get_run(run.id)
        assert stored is not None
        assert (stored.step_progress, stored.total_tokens, stored.unpriced_calls) == (1, 42, 1)
        assert stored.progress_percentage == 50.0

    @_async
    async def test_steps_are_listed_in_step_order_per_run(self, store: RunStore) -> None:
        run = await running_run(store)
        other = await running_run(store)
        for order in (3, 1, 2):
            step = step_record(run, f"s#{order}", order, status=RunStatus.COMPLETED.value)
            await store.start_step(step, {})
        await store.start_step(step_record(other, "x", 1, status=RunStatus.FAILED.value), {})
        assert [s.step_order for s in store.list_steps(run.id)] == [1, 2, 3]
        assert [s.step_key for s in store.list_steps(other.id)] == ["x"]

    @_async
    async def test_finishing_with_an_unknown_column_is_refused(self, store: RunStore) -> None:
        run = await running_run(store)
        step = step_record(run, "s", 1)
        await store.start_step(step, {})
        with pytest.raises(KeyError, match="nonsense"):
            await store.finish_step(step.id, {"nonsense": 1}, run.id, {})  # type: ignore[typeddict-unknown-key]

    @_async
    async def test_finishing_an_unknown_step_is_a_storage_error(self, store: RunStore) -> None:
        run = await running_run(store)
        with pytest.raises(StorageError):
            await store.finish_step(uuid.uuid4(), {"status": RunStatus.COMPLETED.value}, run.id, {})

    # -- LLM requests -----------------------------------------------------------------------
    @_async
    async def test_llm_requests_come_back_oldest_first_by_run_and_step(self, store: RunStore) -> None:
        run = await running_run(store)
        step = step_record(run, "ask", 1, status=RunStatus.COMPLETED.value)
        await store.start_step(step, {})
        call = uuid.uuid4()
        second = LLMRequestRecord(
            flow_run_id=run.id,
            step_run_id=step.id,
            call_id=call,
            model="gpt-test",
            provider="openai",
            api_base="http://127.0.0.1:1/v1",
            request_messages=[{"role": "user", "content": "hi"}],
            request_params={"temperature": 0.2},
            response={"choices": [{"message": {"content": "yo"}}]},
            prompt_tokens=3,
            completion_tokens=4,
            total_tokens=7,
            cost=None,
            latency_ms=15,
            attempt=2,
            created_at=T0 + timedelta(seconds=1),
        )
        first = LLMRequestRecord(
            flow_run_id=run.id,
            step_run_id=step.id,
            call_id=call,
            model="gpt-test",
            status="failed",
            error_message="rate limited",
            created_at=T0,
        )
        loose = LLMRequestRecord(model="other", kind="image", created_at=T0 - timedelta(seconds=1))
        for request in (second, loose, first):
            await store.record_llm_request(request)
        assert store.list_llm_requests(flow_run_id=run.id) == [first, second]
        assert store.list_llm_requests(step_run_id=step.id) == [first, second]
        assert store.list_llm_requests() == [loose, first, second]

    # -- heartbeat and cancel ---------------------------------------------------------------
    @_async
    async def test_heartbeat_and_finish_step_report_a_cancel_of_the_run_or_a_parent(
        self, store: RunStore
    ) -> None:
        parent = await running_run(store)
        child = await running_run(store, parent_run_id=parent.id)
        other = await running_run(store)
        step = step_record(child, "s", 1)
        await store.start_step(step, {})
        assert not await store.heartbeat(child.id, T0)
        stored = store.get_run(child.id)
        assert stored is not None and stored.last_heartbeat == T0

        assert await store.request_cancel(parent.id) == RunStatus.RUNNING.value
        assert await store.heartbeat(parent.id, utcnow())
        assert await store.heartbeat(child.id, utcnow())  # through its parent
        assert await store.finish_step(step.id, {"status": RunStatus.CANCELLED.value}, child.id, {})
        assert not await store.heartbeat(other.id, utcnow())
        stored = store.get_run(parent.id)
        assert stored is not None and stored.status == RunStatus.RUNNING.value  # it stops by itself

    @_async
    async def test_cancel_ends_a_run_nobody_executes_and_leaves_an_ended_one(self, store: RunStore) -> None:
        pending = run_record()
        crashed = run_record(status=RunStatus.CRASHED.value)
        completed = run_record(status=RunStatus.COMPLETED.value)
        for run in (pending, crashed, completed):
            await store.create_run(run)
        assert await store.request_cancel(pending.id) == RunStatus.CANCELLED.value
        assert await store.request_cancel(crashed.id) == RunStatus.CANCELLED.value
        assert await store.request_cancel(completed.id) == RunStatus.COMPLETED.value
        for run in (pending, crashed):
            stored = store.get_run(run.id)
            assert stored is not None and stored.status == RunStatus.CANCELLED.value
            assert stored.completed_at is not None and "cancelled" in (stored.error_message or "")
        stored = store.get_run(completed.id)
        assert stored is not None and (stored.status, stored.completed_at) == ("completed", None)

    @_async
    async def test_cancelling_an_unknown_run_is_not_found(self, store: RunStore) -> None:
        with pytest.raises(NotFoundError):
            await store.request_cancel(uuid.uuid4())

    @_async
    async def test_prepare_resume_keeps_completed_steps_and_clears_the_cancel(self, store: RunStore) -> None:
        run = await running_run(store)
        kept = step_record(run, "a", 1, status=RunStatus.COMPLETED.value)
        await store.start_step(kept, {})
        dropped = step_record(run, "b", 2)
        await store.start_step(dropped, {})
        await store.request_cancel(run.id)
        assert await store.finish_step(dropped.id, {"status": RunStatus.CANCELLED.value}, run.id, {})
        await store.update_run(run.id, {"status": RunStatus.CANCELLED.value, "error_message": "stop"})

        await store.prepare_resume(
            run.id, {"status": RunStatus.RUNNING.value, "error_message": None, "completed_at": None}
        )
        assert [s.id for s in store.list_steps(run.id)] == [kept.id]
        stored = store.get_run(run.id)
        assert stored is not None and (stored.status, stored.error_message) == ("running", None)
        assert not await store.heartbeat(run.id, utcnow())  # the old cancel request is gone

    @_async
    async def test_an_in_flight_request_is_finished_in_place_or_interrupted_by_a_crash(
        self, store: RunStore
    ) -> None:
        if not store.records_in_flight:
            pytest.skip("this store writes each LLM request once, when its attempt ends")
        now = utcnow()
        finished = await running_run(store, last_heartbeat=now)
        sent = LLMRequestRecord(flow_run_id=finished.id, model="m", status=IN_FLIGHT)
        await store.record_llm_request(sent)
        done = sent.model_copy(update={"status": "completed", "total_tokens": 7, "latency_ms": 30})
        await store.finish_llm_request(done)
        [stored] = store.list_llm_requests(flow_run_id=finished.id)
        assert (stored.id, stored.status, stored.total_tokens) == (sent.id, "completed", 7)
        with pytest.raises((StorageError, NotFoundError)):
            await store.finish_llm_request(LLMRequestRecord(flow_run_id=finished.id, model="m"))

        crashed = await running_run(store, last_heartbeat=now - timedelta(minutes=10))
        resumed = await running_run(store, last_heartbeat=now - timedelta(minutes=10))
        for run in (crashed, resumed, finished):
            await store.record_llm_request(LLMRequestRecord(flow_run_id=run.id, model="m", status=IN_FLIGHT))
        assert await store.mark_crashed(now - timedelta(minutes=1), crashed.id) == [crashed.id]
        await store.prepare_resume(resumed.id, {"status": RunStatus.RUNNING.value})
        for run, status in ((crashed, INTERRUPTED), (resumed, INTERRUPTED), (finished, IN_FLIGHT)):
            found = [r for r in store.list_llm_requests(flow_run_id=run.id) if r.status != "completed"]
            assert [r.status for r in found] == [status]
        [cut] = [r for r in store.list_llm_requests(flow_run_id=crashed.id)]
        assert cut.error_message == INTERRUPTED_MESSAGE

    # -- crashes and claims -----------------------------------------------------------------
    @_async
    async def test_mark_crashed_takes_only_running_runs_with_a_stale_heartbeat(self, store: RunStore) -> None:
        now = utcnow()
        stale = await running_run(store, last_heartbeat=now - timedelta(minutes=10))
        never = await running_run(store, last_heartbeat=None)
        fresh = await running_run(store, last_heartbeat=now)
        ended = run_record(status=RunStatus.FAILED.value, last_heartbeat=now - timedelta(hours=1))
        await store.create_run(ended)
        other_stale = await running_run(store, last_heartbeat=now - timedelta(minutes=10))
        cutoff = now - timedelta(minutes=1)

        assert await store.mark_crashed(cutoff, other_stale.id) == [other_stale.id]
        assert sorted(await store.mark_crashed(cutoff)) == sorted([stale.id, never.id])
        assert await store.mark_crashed(cutoff) == []
        statuses = {r.id: r.status for r in store.list_runs()}
        assert statuses == {
            stale.id: "crashed",
            never.id: "crashed",
            other_stale.id: "crashed",
            fresh.id: "running",
            ended.id: "failed",
        }
        stored = store.get_run(stale.id)
        assert stored is not None and stored.error_message

    @_async
    async def test_every_read_sees_the_last_write(self, store: RunStore) -> None:
        """Each read or claim straight after a write (a backend may put its writes off, as
        ``memory://`` does, but never past the next read)."""
        now = utcnow()
        run = await running_run(store, last_heartbeat=now - timedelta(hours=1))
        first, second = step_record(run, "a", 1), step_record(run, "b", 2)
        await store.start_step(first, {"current_step": "a"})
        await store.heartbeat(run.id, now)
        assert await store.mark_crashed(now - timedelta(minutes=1)) == []  # the heartbeat is fresh
        done: StepChanges = {"status": RunStatus.COMPLETED.value, "outputs": {"output_content": 1}}
        await store.finish_step(first.id, done, run.id, {"step_progress": 1, "total_tokens": 7})
        assert [(r.step_progress, r.total_tokens) for r in store.list_runs()] == [(1, 7)]
        await store.start_step(second, {"current_step": "b"})
        await store.finish_step(second.id, {"status": RunStatus.FAILED.value}, run.id, {})
        assert [s.status for s in store.list_steps(run.id)] == ["completed", "failed"]
        await store.update_run(run.id, {"status": RunStatus.FAILED.value})
        assert await store.claim_ended_run(run.id, "resumer")  # sees the run failed
        await store.update_run(run.id, {"error_message": "boom"})
        stored = store.get_run(run.id)
        assert stored is not None and stored.error_message == "boom"
        await store.finish_step(second.id, done, run.id, {})
        await store.prepare_resume(run.id, {"current_step": None})
        assert [s.step_key for s in store.list_steps(run.id)] == ["a", "b"]  # sees "b" completed
        await store.update_run(run.id, {"status": RunStatus.PENDING.value})
        assert await store.claim_run(run.id, "worker", now - timedelta(minutes=1))  # sees it pending
        await store.update_run(run.id, {"status": RunStatus.PENDING.value})
        assert await store.request_cancel(run.id) == RunStatus.CANCELLED  # sees it pending

    @_async
    async def test_claim_run_takes_a_claimable_run_once(self, store: RunStore) -> None:
        now = utcnow()
        pending = run_record()
        await store.create_run(pending)
        assert await store.claim_run(pending.id, "w1", now - timedelta(minutes=1))
        claimed = store.get_run(pending.id)
        assert claimed is not None and (claimed.status, claimed.claimed_by) == ("running", "w1")
        assert claimed.last_heartbeat is not None and claimed.started_at == claimed.last_heartbeat
        assert not await store.claim_run(pending.id, "w2", now - timedelta(minutes=1))  # heartbeat fresh

        orphan = await running_run(store, started_at=T0, last_heartbeat=now - timedelta(minutes=10))
        assert await store.claim_run(orphan.id, "w2", now - timedelta(minutes=1))  # its worker died
        taken = store.get_run(orphan.id)
        assert taken is not None and (taken.claimed_by, taken.started_at) == ("w2", T0)

        crashed = run_record(status=RunStatus.CRASHED.value)
        completed = run_record(status=RunStatus.COMPLETED.value)
        for run in (crashed, completed):
            await store.create_run(run)
        assert await store.claim_run(crashed.id, "w3", now)
        assert not await store.claim_run(completed.id, "w3", now)
        assert not await store.claim_run(uuid.uuid4(), "w3", now)

    @_async
    async def test_of_many_simultaneous_claims_exactly_one_wins(self, store: RunStore) -> None:
        run = run_record()
        await store.create_run(run)
        owners = [f"worker-{n}" for n in range(20)]
        stale_before = utcnow() - timedelta(minutes=1)
        won = await asyncio.gather(*(store.claim_run(run.id, owner, stale_before) for owner in owners))
        assert sum(won) == 1
        stored = store.get_run(run.id)
        assert stored is not None and stored.claimed_by == owners[won.index(True)]

    @_async
    async def test_a_failed_or_cancelled_run_is_taken_for_a_resume_once(self, store: RunStore) -> None:
        failed = run_record(status=RunStatus.FAILED.value)
        cancelled = run_record(status=RunStatus.CANCELLED.value)
        others = [run_record(status=s.value) for s in (RunStatus.COMPLETED, RunStatus.PENDING)]
        for run in (failed, cancelled, *others):
            await store.create_run(run)
        owners = [f"resume-{n}" for n in range(20)]
        won = await asyncio.gather(*(store.claim_ended_run(failed.id, owner) for owner in owners))
        assert sum(won) == 1
        taken = store.get_run(failed.id)
        assert taken is not None and (taken.status, taken.claimed_by) == ("running", owners[won.index(True)])
        assert taken.last_heartbeat is not None
        assert await store.claim_ended_run(cancelled.id, "r")
        assert not await store.claim_ended_run(cancelled.id, "r2")  # running now
        assert not [run for run in others if await store.claim_ended_run(run.id, "r")]
        assert not await store.claim_ended_run(uuid.uuid4(), "r")

    # -- ids --------------------------------------------------------------------------------
    @_async
    async def test_run_ids_by_prefix(self, store: RunStore) -> None:
        a = run_record(id=uuid.UUID("abcd0000-0000-4000-8000-000000000001"))
        b = run_record(id=uuid.UUID("abcd1111-0000-4000-8000-000000000002"))
        c = run_record(id=uuid.UUID("ffff0000-0000-4000-8000-000000000003"))
        for run in (b, c, a):
            await store.create_run(run)
        assert store.run_ids_with_prefix("abcd0") == [a.id]
        assert sorted(store.run_ids_with_prefix("abcd", limit=5)) == [a.id, b.id]
        assert len(store.run_ids_with_prefix("abcd", limit=1)) == 1
        assert store.run_ids_with_prefix("ffff0000-0000") == [c.id]  # dashes as in the printed id
        assert store.run_ids_with_prefix("0123") == []

        assert store.resolve_run_id("ABCD1") == b.id
        assert store.resolve_run_id(str(c.id)) == c.id
        with pytest.raises(UsageError, match="ambiguous"):
            store.resolve_run_id("abcd")
        with pytest.raises(NotFoundError):
            store.resolve_run_id("0123")

    # -- the response cache (optional) ------------------------------------------------------
    @_async
    async def test_the_response_cache_keeps_counts_expires_and_clears(self, store: RunStore) -> None:
        if not store.has_cache:
            pytest.skip("this store keeps no response cache (has_cache is False)")
        older = CacheEntry(key="a" * 64, model="m1", response={"x": 1}, cost=0.25, created_at=T0)
        newer = CacheEntry(
            key="b" * 64,
            model="m2",
            response={"x": 2},
            created_at=T0 + timedelta(days=2),
            expires_at=T0 + timedelta(days=3),
        )
        for entry in (older, newer):
            await store.cache_put(entry)
        assert await store.cache_get("c" * 64, T0) is None
        found = await store.cache_get(older.key, T0 + timedelta(days=1))
        assert found is not None and (found.response, found.hits) == ({"x": 1}, 1)
        again = await store.cache_get(older.key, T0 + timedelta(days=1))
        assert again is not None and again.hits == 2
        assert await store.cache_get(newer.key, T0 + timedelta(days=2, hours=1)) is not None
        assert await store.cache_get(newer.key, T0 + timedelta(days=3)) is None  # expired
        await store.cache_put(older.model_copy(update={"response": {"x": 9}}))  # the same key: replaced
        replaced = await store.cache_get(older.key, T0 + timedelta(days=1))
        assert replaced is not None and replaced.response == {"x": 9}
        stats = {s.model: s for s in store.cache_stats()}
        assert set(stats) == {"m1", "m2"} and stats["m1"].entries == 1
        assert store.cache_clear(older_than=T0 + timedelta(days=1)) == 1  # m1's entry only
        assert [s.model for s in store.cache_stats()] == ["m2"]
        assert store.cache_clear(model="m2") == 1
        assert store.cache_stats() == []
