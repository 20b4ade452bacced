"""The promise of docs/durable-execution.md, end to end: a `flow run` process killed with SIGKILL in the
middle of a flow leaves a run that `flow runs` / `flow show` report as crashed and `flow recover` marks;
`flow resume` finishes it in place, and the fake server's request log shows that no step that had
completed called the LLM again, with the same outputs as an uninterrupted run.

Two runs at once (the subprocesses spend most of their time importing litellm): one killed among the
parent flow's own steps, one killed inside its child flow. Their prompts differ by subject."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from flow_engine.engine import Engine, get_engine
from flow_engine.plugin import RunRecord
from tests.e2e.conftest import MODEL, STALE_AFTER, FlowProcesses, Running, flow_target
from tests.e2e.durable_flows import Research
from tests.fake_openai_server import RemoteFakeOpenAI, use_fake_openai

pytestmark = pytest.mark.slow

KILL_IN = {"rivers": "parent", "lakes": "child"}  # subject -> where its run is killed


@pytest.fixture
def shared_engine(tmp_path: Path, llm: RemoteFakeOpenAI) -> Engine:
    """This process's engine: the subprocesses' SQLite file, the fake server, the same model."""
    return use_fake_openai(
        llm.base_url, tmp_path, database_url=f"sqlite:///{tmp_path / 'flow.db'}", model=MODEL
    )


def prompt_of(request: Any) -> str:
    return str(next(m["content"] for m in request.messages if m.get("role") == "user"))


def tree(run_id: uuid.UUID) -> list[RunRecord]:
    """The run and its child runs (one level: enough for durable_flows.Research)."""
    store = get_engine().store
    root = store.get_run(run_id)
    assert root is not None
    return [root, *store.list_runs(parent_run_id=run_id)]


def prompts_by_status(run_id: uuid.UUID) -> dict[str, list[str]]:
    """Prompts of the steps of a run and its child runs, by step status."""
    found: dict[str, list[str]] = {}
    for run in tree(run_id):
        for step in get_engine().store.list_steps(run.id):
            found.setdefault(step.status, []).append(step.inputs["prompt"])
    return found


def completed_steps(run_id: uuid.UUID) -> int:
    return sum(s.status == "completed" for s in get_engine().store.list_steps(run_id))


def run_of(subject: str) -> RunRecord | None:
    for run in get_engine().store.list_runs(flow_name="e2e_research"):
        if run.inputs.get("subject") == subject:
            return run
    return None


def ready_to_kill(subject: str) -> bool:
    run = run_of(subject)
    if run is None:
        return False
    if KILL_IN[subject] == "parent":  # in the middle of the parent's own steps
        return completed_steps(run.id) >= 2
    children = get_engine().store.list_runs(parent_run_id=run.id)  # in the middle of its child flow
    return bool(children) and completed_steps(children[0].id) >= 1


def kill_when_ready(running: dict[str, Running]) -> dict[str, float]:
    """SIGKILL each run's process as soon as it is where it should die; return when each was killed."""
    killed: dict[str, float] = {}
    deadline = time.monotonic() + 60
    while len(killed) < len(running):
        for subject, process in running.items():
            if subject in killed:
                continue
            if not process.alive():
                raise AssertionError(f"the run of {subject} ended before it was killed:\n{process.stderr}")
            if ready_to_kill(subject):
                process.kill()
                assert process.process.returncode == -signal.SIGKILL
                killed[subject] = time.monotonic()
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting to kill {set(running) - set(killed)}")
        time.sleep(0.02)
    return killed


async def uninterrupted_runs() -> dict[str, tuple[dict[str, Any], list[str]]]:
    """Outputs and step prompts of the same flows run without interruption (in this process)."""

    async def one(subject: str) -> tuple[dict[str, Any], list[str]]:
        flow = Research()
        outputs = await flow.execute({"subject": subject})
        assert flow.run_id is not None
        return outputs, prompts_by_status(flow.run_id)["completed"]

    results = await asyncio.gather(*(one(subject) for subject in KILL_IN))
    return dict(zip(KILL_IN, results, strict=True))


def test_killed_runs_are_found_crashed_and_resumed_without_calling_the_llm_again(
    flows: FlowProcesses, llm: RemoteFakeOpenAI, shared_engine: Engine
) -> None:
    store = shared_engine.store
    running = {
        s: flows.start("run", flow_target("Research"), "-i", f"subject={s}", "--json") for s in KILL_IN
    }
    killed_at = kill_when_ready(running)
    runs = {subject: run_of(subject) for subject in KILL_IN}

    # what the dead processes left behind: runs that still say running, some steps done
    done_before: dict[str, list[str]] = {}
    cut_off: dict[str, list[str]] = {}  # the step whose LLM call was in flight, if any
    for subject, run in runs.items():
        assert run is not None
        found = prompts_by_status(run.id)
        done_before[subject], cut_off[subject] = found["completed"], found.get("running", [])
        assert len(done_before[subject]) >= 2 and len(cut_off[subject]) <= 1, found
        assert {r.status for r in tree(run.id)} == {"running"}
    assert len(tree(runs["lakes"].id)) == 2  # killed inside its child flow
    requests_before = len(llm.chat_requests)

    # meanwhile (their heartbeats are going stale), uninterrupted runs of the same flows, for comparison
    reference = asyncio.run(uninterrupted_runs())
    assert all(len(prompts) == 8 for _, prompts in reference.values())  # 5 steps + 3 of the child flow
    requests_reference = len(llm.chat_requests)
    time.sleep(max(0.0, STALE_AFTER + 0.2 - (time.monotonic() - max(killed_at.values()))))

    # found as crashed by `flow runs --stale`, `flow runs` and `flow show`
    ids = {str(r.id) for run in runs.values() for r in tree(run.id)}
    stale_list = flows.start("runs", "--stale", "--json")
    all_list = flows.start("runs", "--json")
    shows = {subject: flows.start("show", run.id.hex[:8]) for subject, run in runs.items()}
    stale = stale_list.wait(60)
    assert stale.returncode == 0, stale.stderr
    listed = {entry["id"]: entry for entry in json.loads(stale.stdout)}
    assert set(listed) == ids  # the parents and the child that had started; nothing else
    assert {(e["status"], e["stale"]) for e in listed.values()} == {("crashed", True)}
    every = {entry["id"]: entry["status"] for entry in json.loads(all_list.wait(60).stdout)}
    assert {every[i] for i in ids} == {"crashed"}
    assert sorted(every.values()).count("completed") == 4  # the uninterrupted runs and their children
    for shown in (s.wait(60) for s in shows.values()):
        assert shown.returncode == 0, shown.stderr
        status_lines = [line.split()[:2] for line in shown.stdout.splitlines() if line.startswith("status")]
        assert status_lines == [["status", "crashed"]]

    # `flow recover` marks them (and the child) crashed in the database
    recovered = flows.run("recover")
    assert recovered.returncode == 0, recovered.stderr
    assert {line.split()[0] for line in recovered.stdout.splitlines()} == ids
    for run in runs.values():
        marked = store.get_run(run.id)
        assert marked is not None and marked.status == "crashed"
        assert "no heartbeat since" in (marked.error_message or "")
    child_before = tree(runs["lakes"].id)[1]

    # `flow resume PREFIX` finishes each in place, with the outputs of the uninterrupted run
    resuming = {subject: flows.start("resume", run.id.hex[:8], "--json") for subject, run in runs.items()}
    for subject, process in resuming.items():
        resumed = process.wait(90)
        run = runs[subject]
        assert resumed.returncode == 0, resumed.stderr
        assert f"Resuming run {run.id} (e2e_research, was crashed)" in resumed.stderr
        result = json.loads(resumed.stdout)
        assert (result["run_id"], result["status"]) == (str(run.id), "completed")
        assert result["outputs"] == reference[subject][0]

    # the fake server's log: every prompt asked once; only a step cut off by the kill is asked twice
    requests = llm.chat_requests
    asked = Counter(prompt_of(r) for r in [*requests[:requests_before], *requests[requests_reference:]])
    for subject in runs:
        prompts = reference[subject][1]
        assert all(asked[p] == 1 for p in done_before[subject])  # done before the crash: never paid again
        assert {p for p in prompts if asked[p] != 1} <= set(cut_off[subject])
        assert all(asked[p] in (1, 2) for p in prompts)
    assert sum(asked.values()) <= 16 + 2 and set(asked) == {p for _, ps in reference.values() for p in ps}

    # in place: the same run and child run ids, every step completed, the whole spending counted
    for subject, run in runs.items():
        after = tree(run.id)
        assert [r.status for r in after] == ["completed", "completed"]
        assert sorted(prompts_by_status(run.id)["completed"]) == sorted(reference[subject][1])
        assert after[0].flow_metadata["resumed"][0]["previous_status"] == "crashed"
        spent = [
            q for r in after for q in store.list_llm_requests(flow_run_id=r.id) if q.status == "completed"
        ]
        assert after[0].total_tokens == sum(q.total_tokens for q in spent) > 0
        assert after[0].total_cost == pytest.approx(sum(q.cost for q in spent))
        assert after[0].total_cost > 0 and after[0].unpriced_calls == 0
    assert tree(runs["lakes"].id)[1].id == child_before.id
