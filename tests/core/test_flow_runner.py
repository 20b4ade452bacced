"""The flow runner's own contract: reads from async code stay off the event loop, one "load a run by id
or prefix", one "has the run ended", and the import contracts that keep the kernel one-way."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from flow_engine import BaseFlow, BaseStep, cancel_run, resume_run
from flow_engine.errors import NotFoundError, UsageError
from flow_engine.flow_runner import has_ended
from flow_engine.storage import RunRecord, RunStatus, utcnow

FAIL: set[str] = set()
SLOW_READ = 0.3  # seconds one slowed-down store read blocks its thread


class Shout(BaseStep):
    async def run(self, inputs: dict[str, Any]) -> str:
        if inputs["tag"] in FAIL:
            raise RuntimeError(f"{inputs['tag']} failed")
        return inputs["tag"].upper()


class TwoSteps(BaseFlow):
    flow_name = "two_steps"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        a = await Shout().execute({"tag": "a"})
        b = await Shout().execute({"tag": "b"})
        return {"a": a.output_content, "b": b.output_content}


@pytest.fixture(autouse=True)
def _reset():
    FAIL.clear()
    yield
    FAIL.clear()


def _slow_reads(store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every read of the store sleeps synchronously first, like a database on a slow network."""
    for name in ("get_run", "list_runs", "list_steps", "list_llm_requests", "run_ids_with_prefix"):
        original = getattr(store, name)

        def slow(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            time.sleep(SLOW_READ)
            return _original(*args, **kwargs)

        monkeypatch.setattr(store, name, slow)


async def _longest_stall(work: Any) -> float:
    """Run ``work`` while another task ticks every 10 ms; the longest gap between two ticks."""
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)

    task = asyncio.ensure_future(ticker())
    await asyncio.sleep(0.02)
    try:
        await work
    finally:
        task.cancel()
    return max(b - a for a, b in itertools.pairwise(ticks))


async def test_resume_and_cancel_read_the_store_without_blocking_the_event_loop(engine, monkeypatch):
    FAIL.add("b")
    flow = TwoSteps()
    with pytest.raises(RuntimeError):
        await flow.execute({})
    FAIL.clear()
    _slow_reads(engine.store, monkeypatch)
    prefix = str(flow.run_id)[:8]  # resolving a prefix reads too

    stall = await _longest_stall(resume_run(prefix))
    assert stall < SLOW_READ / 2, f"the loop stood still {stall:.3f}s during resume"
    assert engine.store.get_run(flow.run_id).status == RunStatus.COMPLETED

    stall = await _longest_stall(flow.resume(prefix))  # BaseFlow.resume loads a run by id too
    assert stall < SLOW_READ / 2, f"the loop stood still {stall:.3f}s during BaseFlow.resume"

    stale = RunRecord(flow_name="two_steps", status="running", last_heartbeat=utcnow() - timedelta(hours=1))
    await engine.store.create_run(stale)
    stall = await _longest_stall(cancel_run(str(stale.id)))
    assert stall < SLOW_READ / 2, f"the loop stood still {stall:.3f}s during cancel"


async def test_load_run_by_id_or_unique_prefix_with_errors_that_say_what_to_do(engine):
    ids = [uuid.UUID(f"{p}0000-0000-4000-8000-00000000000{n}") for n, p in ((1, "abcd"), (2, "abce"))]
    for run_id in ids:
        await engine.store.create_run(RunRecord(id=run_id, flow_name="f"))
    store = engine.store
    assert store.load_run(ids[0]).id == ids[0]
    assert store.load_run(str(ids[1])).id == ids[1]
    assert store.load_run("ABCD").id == ids[0]  # case and dashes do not matter
    with pytest.raises(UsageError, match="run id prefix 'abc' is ambiguous; give more characters"):
        store.load_run("abc")
    with pytest.raises(NotFoundError, match="no run with id starting 'ffff'; `flow runs` lists the recorded"):
        store.load_run("ffff")
    missing = uuid.UUID(int=7)
    with pytest.raises(NotFoundError, match=f"no run with id {missing}; `flow runs` lists the recorded runs"):
        store.load_run(missing)
    with pytest.raises(UsageError, match="'x!' is not a run id or a prefix of one"):
        store.load_run("x!")


async def test_has_ended_is_the_one_answer_for_every_status(engine):
    old = utcnow() - timedelta(hours=1)
    local = {"background": {"executor": "local"}}
    cases = [
        (RunRecord(flow_name="f", status="completed"), True),
        (RunRecord(flow_name="f", status="failed"), True),
        (RunRecord(flow_name="f", status="cancelled"), True),
        (RunRecord(flow_name="f", status="crashed"), True),
        (RunRecord(flow_name="f", status="running", last_heartbeat=old), True),  # its process died
        (RunRecord(flow_name="f", status="running", last_heartbeat=utcnow()), False),
        (RunRecord(flow_name="f", status="pending"), False),
        # a crashed background run of the local executor died with its process: nobody takes it over
        (RunRecord(flow_name="f", status="crashed", execution_mode="background", flow_metadata=local), True),
    ]
    assert [has_ended(run) for run, _ in cases] == [ended for _, ended in cases]


def test_the_import_contracts_hold():
    """No cycle, no layer imported from below, no core module importing a plugin (.importlinter)."""
    pytest.importorskip("importlinter")
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, str(root / "tools" / "lint_imports.py")], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Contracts: 3 kept, 0 broken." in done.stdout
