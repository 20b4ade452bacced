"""SQLite file: a write that finds the writer idle is done by its caller on the event loop (no thread
hand-off); a step's start is deferred to go with its finish; checkpoints run on the writer thread."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from flow_engine import BaseFlow, BaseStep
from flow_engine.plugins.sql import writer as writer_module


class Plain(BaseStep):
    step_name = "plain"

    async def run(self, inputs: Any) -> int:
        return int(inputs["n"]) + 1


def counting_flow(steps: int) -> BaseFlow:
    class Counting(BaseFlow):
        flow_name = "counting"
        total_steps = steps

        async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
            n = 0
            for _ in range(steps):
                n = (await Plain().execute({"n": n})).output_content
            return {"n": n}

    return Counting()


def spy_transactions(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """(thread name, operations) of every transaction the writer runs."""
    seen: list[tuple[str, int]] = []
    original = writer_module.Writer._transaction

    def spy(self: Any, operations: list[Any], *args: Any) -> list[Any]:
        seen.append((threading.current_thread().name, len(operations)))
        return original(self, operations, *args)

    monkeypatch.setattr(writer_module.Writer, "_transaction", spy)
    return seen


async def test_a_sequential_flow_writes_on_its_own_thread_one_commit_per_step(store, backend, monkeypatch):
    seen = spy_transactions(monkeypatch)
    flow = counting_flow(20)
    assert await flow.execute({}) == {"n": 20}
    steps = store.list_steps(flow.run_id)
    assert [s.status for s in steps] == ["completed"] * 20 and store.get_run(flow.run_id).step_progress == 20
    step_commits = [n for _, n in seen if n == 2]  # a step's start and finish, in one transaction
    assert len(step_commits) == 20 and len(seen) == 22  # + creating and ending the run
    threads = {name for name, _ in seen}
    if backend == "sqlite":
        assert threads == {threading.current_thread().name}  # no hand-off to the writer thread
    else:  # a server round trip never runs on the event loop
        assert threads == {"flow-engine-sql-writer"}


async def test_a_step_that_awaits_has_its_start_row_committed_meanwhile(store):
    started = asyncio.Event()
    release = asyncio.Event()

    class Waits(BaseStep):
        step_name = "waits"

        async def run(self, inputs: Any) -> str:
            started.set()
            await release.wait()
            return "done"

    class OneStep(BaseFlow):
        flow_name = "one_step"

        async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
            return {"out": (await Waits().execute({})).output_content}

    flow = OneStep()
    task = asyncio.create_task(flow.execute({}))
    await started.wait()
    for _ in range(100):  # the deferred start is flushed once the loop gets a turn
        steps = store.list_steps(flow.run_id) if flow.run_id else []
        if steps:
            break
        await asyncio.sleep(0.01)
    assert [(s.step_key, s.status) for s in steps] == [("waits", "running")]
    assert store.get_run(flow.run_id).current_step == "waits"
    release.set()
    assert await task == {"out": "done"}
    assert [s.status for s in store.list_steps(flow.run_id)] == ["completed"]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_the_wal_is_checkpointed_by_the_writer_thread(store, db_url, monkeypatch):
    monkeypatch.setattr(writer_module, "CHECKPOINT_EVERY", 8)
    threads: list[str] = []
    original = writer_module.Writer._checkpoint

    def spy(self: Any) -> None:
        threads.append(threading.current_thread().name)
        original(self)

    monkeypatch.setattr(writer_module.Writer, "_checkpoint", spy)
    seen = spy_transactions(monkeypatch)
    wal = Path(store.engine.url.database + "-wal")
    for _ in range(6):
        await counting_flow(50).execute({})
    await asyncio.sleep(0.2)  # the last checkpoint runs on the thread, after the commit that asked
    # one asked for every 8 of the ~300 commits; requests queued while a checkpoint runs are done by
    # one checkpoint (a loaded machine, with slow fsyncs, ran 10 for 39 asked), and at the default of
    # 256 commits these 300 would ask for one
    assert len(seen) >= 300 and len(threads) >= 5 and set(threads) == {"flow-engine-sql-writer"}
    # without checkpoints (automatic ones are off on the writer's connection) these 300 commits grow
    # the WAL to ~11 MB; a checkpointed WAL is reused from its start (0.9-1.1 MB seen: a checkpoint
    # that meets a write in progress cannot rewind it, so its high-water mark varies)
    assert wal.stat().st_size < 3_000_000  # noqa: ASYNC240 - a stat, after the writes


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_a_checkpoint_does_not_hold_inline_writes_back(store, monkeypatch):
    """A checkpoint fsyncs (tens of milliseconds); it runs on a connection of its own, so writes made
    meanwhile stay inline instead of waiting for it on the thread (every 256 commits, that wait was a
    fifth of a plain step's cost)."""
    monkeypatch.setattr(writer_module, "CHECKPOINT_EVERY", 1)  # every commit asks for one
    started, release = threading.Event(), threading.Event()
    original = writer_module.Writer._checkpoint

    def slow(self: Any) -> None:
        started.set()
        release.wait(10)
        original(self)

    monkeypatch.setattr(writer_module.Writer, "_checkpoint", slow)
    flow = counting_flow(1)
    await flow.execute({})
    assert await asyncio.to_thread(started.wait, 10)  # the thread is in a checkpoint, and stays there
    seen = spy_transactions(monkeypatch)
    try:
        await asyncio.sleep(writer_module.INLINE_AFTER_QUIET_S)
        await asyncio.wait_for(store.update_run(flow.run_id, {"current_step": "meanwhile"}), 2)
    finally:
        release.set()
    assert [name for name, _ in seen] == [threading.current_thread().name]
    assert store.get_run(flow.run_id).current_step == "meanwhile"


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_a_write_that_meets_a_busy_connection_goes_to_the_thread_without_counting_as_load(
    store, monkeypatch
):
    """A write that finds the connection taken (the thread writing) is handed over, but the
    next write is inline again: a checkpoint is not load (a hand-over because of load would keep
    writes on the thread for INLINE_AFTER_QUIET_S)."""
    flow = counting_flow(1)
    await flow.execute({})
    writer = store._writer
    seen = spy_transactions(monkeypatch)
    before = writer._last_hand_over
    writer._conn_lock.acquire()  # what the thread holds while it writes
    try:
        pending = asyncio.ensure_future(store.update_run(flow.run_id, {"current_step": "a"}))
        await asyncio.sleep(0.05)
    finally:
        writer._conn_lock.release()
    await pending
    assert writer._last_hand_over == before  # handed over, not counted as load
    for _ in range(200):  # the thread counts its entry done just after answering it
        if not writer._in_thread:
            break
        await asyncio.sleep(0.005)
    await store.update_run(flow.run_id, {"current_step": "b"})
    here = threading.current_thread().name
    assert [name for name, _ in seen] == ["flow-engine-sql-writer", here]
    assert store.get_run(flow.run_id).current_step == "b"
