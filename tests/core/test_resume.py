"""Durable execution in the core: resume in place, replay without re-running, mismatch refusal, child
runs, cancel at a step boundary, budgets, crash detection. (The SIGKILL end-to-end test is in tests/e2e.)"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from flow_engine import (
    BaseFlow,
    BaseStep,
    BudgetExceeded,
    ResumeMismatch,
    RunCancelled,
    StructuredStep,
    cancel_run,
    recover_runs,
    resume_run,
)
from flow_engine.plugin import RunRecord, RunStatus
from flow_engine.resume import display_status, is_stale
from flow_engine.storage import utcnow

CALLS: Counter[str] = Counter()
FAIL_AT: set[str] = set()


@pytest.fixture(autouse=True)
def _reset():
    CALLS.clear()
    FAIL_AT.clear()


class Work(BaseStep):
    class Inputs(BaseModel):
        tag: str

    async def run(self, inputs: Inputs) -> str:
        CALLS[inputs.tag] += 1
        if inputs.tag in FAIL_AT:
            raise RuntimeError(f"{inputs.tag} failed")
        return inputs.tag.upper()


class Other(BaseStep):
    async def run(self, inputs: Any) -> str:
        return "other"


class Three(BaseFlow):
    flow_name = "three"
    total_steps = 3
    swap_first = False

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        if self.swap_first:
            await Other().execute({})
        else:
            await Work().execute({"tag": "a"})
        b = await Work().execute({"tag": "b"})
        c = await Work().execute({"tag": "c"})
        return {"b": b.output_content, "c": c.output_content}


async def test_resume_replays_completed_steps_and_finishes_in_place(engine):
    FAIL_AT.add("c")
    flow = Three()
    with pytest.raises(RuntimeError):
        await flow.execute({})
    failed = engine.store.get_run(flow.run_id)
    assert failed.status == RunStatus.FAILED and failed.step_progress == 2
    FAIL_AT.clear()
    outputs = await resume_run(str(flow.run_id)[:8])
    assert outputs == {"b": "B", "c": "C"}
    assert CALLS == {"a": 1, "b": 1, "c": 2}  # a and b were not run again
    run = engine.store.get_run(flow.run_id)
    assert (run.status, run.error_message, run.step_progress, run.progress_percentage) == (
        "completed",
        None,
        3,
        100.0,
    )
    assert [(s.step_key, s.status) for s in engine.store.list_steps(run.id)] == [
        ("work", "completed"),
        ("work#2", "completed"),
        ("work#3", "completed"),
    ]
    [history] = run.flow_metadata["resumed"]
    assert history["previous_status"] == "failed" and "c failed" in history["error"]
    assert len(engine.store.list_runs()) == 1


async def test_resuming_a_completed_run_is_a_no_op(engine):
    flow = Three()
    first = await flow.execute({})
    assert await resume_run(flow.run_id) == first
    assert CALLS == {"a": 1, "b": 1, "c": 1}


async def test_resume_refuses_when_the_code_calls_another_step(engine):
    FAIL_AT.add("b")
    flow = Three()
    with pytest.raises(RuntimeError):
        await flow.execute({})
    Three.swap_first = True
    try:
        with pytest.raises(ResumeMismatch, match=r"step 1 was 'work'.*now calls 'other'"):
            await resume_run(flow.run_id)
    finally:
        Three.swap_first = False


class Digest(StructuredStep):
    class Inputs(BaseModel):
        prompt: str

    class Outputs(BaseModel):
        headline: str
        points: list[str]


class DigestFlow(BaseFlow):
    flow_name = "digest_flow"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        digest = await Digest().execute({"prompt": "Write a digest of: rivers, bridges, parks."})
        assert isinstance(digest.output_content, Digest.Outputs)  # also when replayed
        await Work().execute({"tag": "after"})
        return {
            "headline": digest.output_content.headline,
            "replayed": digest.metadata.get("replayed", False),
        }


async def test_structured_output_comes_back_as_outputs_model_without_llm_call(engine, scripted):
    scripted.respond("digest", Digest.Outputs(headline="Rivers, bridges, parks", points=["rivers"]))
    FAIL_AT.add("after")
    flow = DigestFlow()
    with pytest.raises(RuntimeError):
        await flow.execute({})
    FAIL_AT.clear()
    outputs = await resume_run(flow.run_id)  # the script holds no second answer: asking again would fail
    assert outputs == {"headline": "Rivers, bridges, parks", "replayed": True}
    scripted.expect("digest", contains="rivers, bridges, parks", count=1)
    assert len(engine.store.list_llm_requests(flow_run_id=flow.run_id)) == 1


class Child(BaseFlow):
    flow_name = "child"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        x = await Work().execute({"tag": f"{inputs['name']}1"})
        y = await Work().execute({"tag": f"{inputs['name']}2"})
        return {"out": x.output_content + y.output_content}


class Parent(BaseFlow):
    flow_name = "parent"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        first = await Child().execute({"name": "p"})
        second = await Child().execute({"name": "q"})
        last = await Work().execute({"tag": "z"})
        return {"first": first["out"], "second": second["out"], "last": last.output_content}


async def test_child_flows_resume_in_place(engine):
    FAIL_AT.add("q2")
    parent = Parent()
    with pytest.raises(RuntimeError):
        await parent.execute({})
    children = {c.run_key: c for c in engine.store.list_runs(parent_run_id=parent.run_id)}
    assert children["child"].status == "completed" and children["child#2"].status == "failed"
    FAIL_AT.clear()
    assert await resume_run(parent.run_id) == {"first": "P1P2", "second": "Q1Q2", "last": "Z"}
    assert CALLS == {"p1": 1, "p2": 1, "q1": 1, "q2": 2, "z": 1}
    after = {c.run_key: c for c in engine.store.list_runs(parent_run_id=parent.run_id)}
    assert {k: c.id for k, c in after.items()} == {k: c.id for k, c in children.items()}
    assert all(c.status == "completed" for c in after.values())


async def test_a_child_run_is_resumed_through_its_root(engine):
    FAIL_AT.add("p2")
    parent = Parent()
    with pytest.raises(RuntimeError):
        await parent.execute({})
    [child] = engine.store.list_runs(parent_run_id=parent.run_id)
    with pytest.raises(Exception, match="resume that run instead"):
        await resume_run(child.id)


async def test_cancel_stops_at_the_next_step_boundary(engine):
    started = asyncio.Event()
    release = asyncio.Event()

    class Gate(BaseStep):
        async def run(self, inputs: Any) -> str:
            started.set()
            await release.wait()
            return "passed"

    class Gated(BaseFlow):
        flow_name = "gated"

        async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
            await Gate().execute({})
            await Work().execute({"tag": "never"})
            return {}

    flow = Gated()
    task = asyncio.create_task(flow.execute({}))
    await started.wait()
    _, status = await cancel_run(flow.run_id)
    assert status == "running"  # it will stop at the boundary, not mid-step
    release.set()
    with pytest.raises(RunCancelled):
        await task
    run = engine.store.get_run(flow.run_id)
    assert run.status == RunStatus.CANCELLED and "cancelled" in run.error_message
    assert [(s.step_key, s.status) for s in engine.store.list_steps(flow.run_id)] == [("gate", "completed")]
    assert CALLS["never"] == 0
    assert await Gated().resume(flow.run_id) == {}  # a cancelled run can be resumed
    assert CALLS["never"] == 1


async def test_max_tokens_stops_the_run_at_a_step_boundary(engine):
    class Say(StructuredStep):
        class Inputs(BaseModel):
            prompt: str

        class Outputs(BaseModel):
            text: str

    class Chatty(BaseFlow):
        flow_name = "chatty"
        max_tokens = 1

        async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
            await Say().execute({"prompt": "hello there"})
            await Say().execute({"prompt": "again"})
            return {}

    flow = Chatty()
    with pytest.raises(BudgetExceeded, match=r"budget exceeded: \d+ tokens reached max_tokens 1"):
        await flow.execute({})
    run = engine.store.get_run(flow.run_id)
    assert run.status == RunStatus.FAILED and run.error_message.startswith("BudgetExceeded: budget exceeded")
    assert len(engine.store.list_steps(flow.run_id)) == 1
    # a higher budget on resume lets it finish, without paying for the first call again
    assert await Chatty().resume(flow.run_id, max_tokens=10_000) == {}
    assert len(engine.store.list_llm_requests(flow_run_id=flow.run_id)) == 2


async def test_execute_argument_overrides_the_class_budget(engine):
    flow = Three()
    await flow.execute({}, max_tokens=1)  # plain steps spend no tokens...
    digest = DigestFlow()
    with pytest.raises(BudgetExceeded):
        await digest.execute({}, max_tokens=1)  # ...an LLM step does: stopped before the next step
    assert [s.step_name for s in engine.store.list_steps(digest.run_id)] == ["digest"]


async def test_stale_running_run_is_crashed_and_can_be_resumed(engine):
    record = RunRecord(
        flow_name="three",
        status=RunStatus.RUNNING.value,
        started_at=utcnow() - timedelta(hours=1),
        last_heartbeat=utcnow() - timedelta(minutes=10),
        flow_metadata={"flow_ref": f"{__name__}:Three"},
    )
    fresh = RunRecord(flow_name="three", status="running", last_heartbeat=utcnow())
    await engine.store.create_run(record)
    await engine.store.create_run(fresh)
    stored = engine.store.get_run(record.id)
    assert is_stale(stored) and display_status(stored) == "crashed"
    assert display_status(engine.store.get_run(fresh.id)) == "running"
    with pytest.raises(Exception, match="still running"):
        await resume_run(fresh.id)
    assert await recover_runs() == [record.id]
    assert engine.store.get_run(record.id).status == "crashed"
    assert await recover_runs() == []  # already marked; a finished run is never marked
    assert await resume_run(record.id) == {"b": "B", "c": "C"}
    assert engine.store.get_run(record.id).status == "completed"


class Say(StructuredStep):
    class Inputs(BaseModel):
        prompt: str

    class Outputs(BaseModel):
        text: str


class Talker(BaseFlow):
    flow_name = "talker"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        said = await Say().execute({"prompt": f"talk about {inputs['topic']}"})
        return {"text": said.output_content.text}


class Panel(BaseFlow):
    flow_name = "panel"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        first = await Talker().execute({"topic": "rivers"})
        await Work().execute({"tag": "between"})
        second = await Talker().execute({"topic": "lakes"})
        return {"first": first["text"], "second": second["text"]}


async def test_resume_counts_everything_the_run_tree_spent_once(engine):
    FAIL_AT.add("between")
    panel = Panel()
    with pytest.raises(RuntimeError):
        await panel.execute({})
    spent_before = engine.store.get_run(panel.run_id).total_tokens
    assert spent_before > 0  # the first child's call
    FAIL_AT.clear()
    await resume_run(panel.run_id)  # the completed child is replayed, its spending still counts
    runs = [panel.run_id, *(c.id for c in engine.store.list_runs(parent_run_id=panel.run_id))]
    requests = [r for run_id in runs for r in engine.store.list_llm_requests(flow_run_id=run_id)]
    assert len(requests) == 2  # one call per child: the first was not made again
    assert engine.store.get_run(panel.run_id).total_tokens == sum(r.total_tokens for r in requests)


async def test_cancelling_a_parent_stops_its_running_child_at_the_childs_next_step(engine, tmp_path):
    from flow_engine import configure

    # a heartbeat far away: the child learns of the cancel when its step ends, from its parent's flag
    engine = configure(database_url=engine.database_url, data_dir=tmp_path / "data", heartbeat_interval=3600)
    started = asyncio.Event()
    release = asyncio.Event()

    class Gate(BaseStep):
        async def run(self, inputs: Any) -> str:
            started.set()
            await release.wait()
            return "passed"

    class GatedChild(BaseFlow):
        flow_name = "gated_child"

        async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
            await Gate().execute({})
            await Work().execute({"tag": "child_after"})
            return {}

    class GatedParent(BaseFlow):
        flow_name = "gated_parent"

        async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
            await GatedChild().execute({})
            await Work().execute({"tag": "parent_after"})
            return {}

    parent = GatedParent()
    task = asyncio.create_task(parent.execute({}))
    await asyncio.wait_for(started.wait(), 10)
    assert (await cancel_run(parent.run_id))[1] == "running"
    release.set()
    with pytest.raises(RunCancelled):
        await asyncio.wait_for(task, 10)
    [child] = engine.store.list_runs(parent_run_id=parent.run_id)
    assert (engine.store.get_run(parent.run_id).status, child.status) == ("cancelled", "cancelled")
    assert [(s.step_key, s.status) for s in engine.store.list_steps(child.id)] == [("gate", "completed")]
    assert CALLS == {}  # neither the child's next step nor the parent's ran


async def test_a_crashed_run_is_cancelled_at_once_and_never_resumed_by_itself(engine):
    record = RunRecord(flow_name="three", status="running", last_heartbeat=utcnow() - timedelta(hours=1))
    await engine.store.create_run(record)
    assert await recover_runs() == [record.id]
    run, status = await cancel_run(record.id)
    assert status == "cancelled" and run.status == "crashed"
    stored = engine.store.get_run(record.id)
    assert stored.status == "cancelled" and "after its process had died" in stored.error_message
    _, again = await cancel_run(record.id)
    assert again == "cancelled"  # unchanged; the CLI says "already cancelled"
