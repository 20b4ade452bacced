"""The flow runner's own contract: reads from async code stay off the event loop, one "load a run by id
or prefix", one "has the run ended", and the import contracts that keep the kernel one-way."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from flow_engine import BaseFlow, BaseStep, cancel_run, resume_run
from flow_engine.errors import NotFoundError, UsageError
from flow_engine.flow_runner import has_ended
from flow_engine.plugin import RunRecord, RunStatus
from flow_engine.storage import utcnow

FAIL: set[str] = set()


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


def _watch_reads(store: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every read of the store is noted when it runs on a thread with a running event loop (where a
    database on a slow network would stop every other task); returns that list."""
    on_loop: list[str] = []
    for name in ("get_run", "list_runs", "list_steps", "list_llm_requests", "run_ids_with_prefix"):
        original = getattr(store, name)

        def watched(*args: Any, _original: Any = original, _name: str = name, **kwargs: Any) -> Any:
            if asyncio._get_running_loop() is not None:
                on_loop.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(store, name, watched)
    return on_loop


async def test_resume_and_cancel_read_the_store_without_blocking_the_event_loop(engine, monkeypatch):
    FAIL.add("b")
    flow = TwoSteps()
    with pytest.raises(RuntimeError):
        await flow.execute({})
    FAIL.clear()
    on_loop = _watch_reads(engine.store, monkeypatch)
    prefix = str(flow.run_id)[:8]  # resolving a prefix reads too

    await resume_run(prefix)
    assert on_loop == [], "resume read the store on the event loop's thread"
    assert engine.store.get_run(flow.run_id).status == RunStatus.COMPLETED
    on_loop.clear()

    await flow.resume(prefix)  # BaseFlow.resume loads a run by id too
    assert on_loop == [], "BaseFlow.resume read the store on the event loop's thread"

    stale = RunRecord(flow_name="two_steps", status="running", last_heartbeat=utcnow() - timedelta(hours=1))
    await engine.store.create_run(stale)
    await cancel_run(str(stale.id))
    assert on_loop == [], "cancel read the store on the event loop's thread"


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
