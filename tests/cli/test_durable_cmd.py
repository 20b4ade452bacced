"""``flow resume``, ``flow cancel``, ``flow recover`` and ``flow runs --stale``: exit codes, messages,
``--json``, a cancel that crosses processes, and budgets given on the command line (a priced model on
the fake server, so costs are known; an unpriced one, whose calls are never counted as free)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from flow_engine import BaseFlow, BaseStep, RunWaiting
from flow_engine.engine import get_engine
from flow_engine.plugin import RunRecord, RunStatus
from flow_engine.storage import utcnow
from tests.cli.conftest import flow_command
from tests.e2e.conftest import Running, wait_until
from tests.fake_openai_server import API_KEY, FakeOpenAI, Reply, use_fake_openai

FLOWS_FILE = Path(__file__).resolve().parents[1] / "e2e" / "durable_flows.py"

CALLS: Counter[str] = Counter()
FAIL_AT: set[str] = set()


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.clear()
    FAIL_AT.clear()


class Work(BaseStep):
    step_name = "work"

    class Inputs(BaseModel):
        tag: str

    async def run(self, inputs: Inputs) -> str:
        CALLS[inputs.tag] += 1
        if inputs.tag in FAIL_AT:
            raise RuntimeError(f"{inputs.tag} failed")
        return inputs.tag.upper()


class Other(BaseStep):
    step_name = "other"

    async def run(self, inputs: Any) -> str:
        return "other"


class Three(BaseFlow):
    flow_name = "cli_three"
    swap_first = False

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        await (Other() if self.swap_first else Work()).execute({"tag": "a"})
        b = await Work().execute({"tag": "b"})
        c = await Work().execute({"tag": "c"})
        return {"b": b.output_content, "c": c.output_content}


class Inner(BaseFlow):
    flow_name = "cli_inner"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"x": (await Work().execute({"tag": "x"})).output_content}


class Outer(BaseFlow):
    flow_name = "cli_outer"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        inner = await Inner().execute({})
        await Work().execute({"tag": "z"})
        return inner


def execute(flow: BaseFlow, **kwargs: Any) -> uuid.UUID:
    """Run ``flow`` in this process (same database as `flow` subprocesses); its run id, even if it failed."""
    try:
        asyncio.run(flow.execute({}, **kwargs))
    except Exception:
        pass
    assert flow.run_id is not None
    return flow.run_id


def stored(run_id: uuid.UUID) -> RunRecord:
    run = get_engine().store.get_run(run_id)
    assert run is not None
    return run


def create(**fields: Any) -> RunRecord:
    record = RunRecord(flow_name=fields.pop("flow_name", "cli_three"), **fields)
    asyncio.run(get_engine().store.create_run(record))
    return record


def ago(**delta: float) -> Any:
    return utcnow() - timedelta(**delta)


# -- flow resume ------------------------------------------------------------------------------------
def test_resume_finishes_a_failed_run_without_running_its_completed_steps(cli_invoke):
    FAIL_AT.add("c")
    run_id = execute(Three())
    FAIL_AT.clear()
    result = cli_invoke("resume", run_id.hex[:8])
    assert result.exit_code == 0, result.output
    assert f"Resuming run {run_id} (cli_three, was failed)." in result.stderr
    assert json.loads(result.stdout) == {"b": "B", "c": "C"}
    assert CALLS == {"a": 1, "b": 1, "c": 2}  # a and b were replayed
    # the progress says which steps were replayed (two of the three)
    assert result.stderr.count("· replayed (stored output)") == 2
    assert stored(run_id).status == RunStatus.COMPLETED
    assert f"Run {run_id} completed" in result.stderr and "Resume it with" not in result.stderr


def test_resuming_a_completed_run_is_a_no_op_that_says_so(cli_invoke):
    run_id = execute(Three())
    result = cli_invoke("resume", str(run_id))
    assert result.exit_code == 0
    assert f"Run {run_id} already completed; nothing to resume." in result.stderr
    assert json.loads(result.stdout) == {"b": "B", "c": "C"}
    as_json = cli_invoke("resume", str(run_id), "--json")
    assert as_json.exit_code == 0
    payload = json.loads(as_json.stdout)
    assert (payload["run_id"], payload["status"], payload["outputs"]) == (
        str(run_id),
        "completed",
        {"b": "B", "c": "C"},
    )
    assert CALLS == {"a": 1, "b": 1, "c": 1}  # nothing ran again


def test_resume_refusals_exit_2_with_one_line(cli_invoke):
    FAIL_AT.add("x")
    outer = execute(Outer())
    [child] = get_engine().store.list_runs(parent_run_id=outer)
    live = create(status="running", started_at=utcnow(), last_heartbeat=utcnow())
    lost = create(flow_name="gone_flow", status="failed", flow_metadata={"flow_ref": "nowhere_module:Gone"})
    for run_id in ("abcd0000-0000-4000-8000-000000000001", "abce0000-0000-4000-8000-000000000002"):
        create(id=uuid.UUID(run_id), status="failed")
    cases = {
        child.id.hex[:10]: f"run {child.id} is a child of run {outer}; resume that run instead",
        str(live.id): f"run {live.id} is still running (last heartbeat ",
        "ffff": "no run with id starting 'ffff'",
        "abc": "run id prefix 'abc' is ambiguous; give more characters",
        "not-a-run!": "'not-a-run!' is not a run id or a prefix of one",
        str(lost.id): "cannot find the code of flow 'gone_flow' to resume run",
    }
    for given, message in cases.items():
        result = cli_invoke("resume", given)
        assert result.exit_code == 2, (given, result.output)
        assert result.stderr.startswith(f"Error: {message}") and result.stderr.count("\n") == 1, result.stderr
        as_json = cli_invoke("resume", given, "--json")
        assert as_json.exit_code == 2
        payload = json.loads(as_json.stdout)
        assert payload["status"] == "invalid" and payload["error"].startswith(message)
    assert CALLS == {"x": 1}  # nothing was resumed
    assert stored(live.id).status == "running"


def test_resume_refuses_an_unknown_model_before_the_run_is_touched(cli_invoke):
    FAIL_AT.add("b")
    run_id = execute(Three())
    before = stored(run_id)
    result = cli_invoke("resume", str(run_id), "-m", "garbage")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("Error: unknown model 'garbage': litellm cannot tell which provider")
    assert "Traceback" not in result.output
    assert stored(run_id) == before and CALLS == {"a": 1, "b": 1}  # not claimed, nothing ran


def test_a_live_run_can_be_resumed_with_force_when_its_process_is_gone(cli_invoke):
    run = create(
        status="running",
        started_at=utcnow(),
        last_heartbeat=utcnow(),
        flow_metadata={"flow_ref": f"{__name__}:Three"},
    )
    result = cli_invoke("resume", str(run.id), "--force")
    assert result.exit_code == 0, result.output
    assert stored(run.id).status == "completed"


def test_resume_of_changed_code_fails_without_mixing_results(cli_invoke):
    FAIL_AT.add("b")
    run_id = execute(Three())
    FAIL_AT.clear()
    Three.swap_first = True
    try:
        result = cli_invoke("resume", str(run_id))
    finally:
        Three.swap_first = False
    assert result.exit_code == 1
    assert "ResumeMismatch: cannot resume run" in result.stderr
    assert "step 1 was 'work' in the original run, but the flow now calls 'other' there" in result.stderr
    advice = (
        "The flow's code no longer matches the run's steps: start a new run, or restore the code it ran with"
    )
    assert advice in result.stderr and "Resume it with" not in result.stderr
    shown = cli_invoke("show", str(run_id)).stdout
    assert advice in " ".join(shown.split()) and "Resume it with" not in shown
    assert CALLS == {"a": 1, "b": 1}
    # with the original code back, it resumes
    assert cli_invoke("resume", str(run_id)).exit_code == 0
    assert CALLS == {"a": 1, "b": 2, "c": 1}


@pytest.mark.slow
def test_in_a_real_process_refusals_are_one_line_without_traceback(flow, engine):
    engine.store  # noqa: B018 - an existing, empty database (reading commands never create one)
    for command in ("resume", "cancel"):
        result = flow(command, "ffff")
        assert (result.returncode, result.stderr) == (
            2,
            "Error: no run with id starting 'ffff'; `flow runs` lists the recorded runs\n",
        )
    empty = flow("recover")
    assert (empty.returncode, empty.stdout, empty.stderr) == (0, "", "No stale runs.\n")


# -- flow cancel -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_cancel_from_another_process_stops_the_run_at_a_step_boundary(flow, flow_env, tmp_path):
    store = get_engine().store
    running = Running(
        [*flow_command(), "run", f"{FLOWS_FILE}:Patient", "-i", "seconds=1.0"],
        flow_env(FLOW_ENGINE_HEARTBEAT_INTERVAL="0.2"),
        tmp_path,
        "patient",
    )
    try:
        run = wait_until(
            lambda: next(iter(store.list_runs(flow_name="e2e_patient")), None),
            timeout=30,
            what="the run",
            process=running,
        )
        wait_until(
            lambda: any(s.status == "completed" for s in store.list_steps(run.id)),
            timeout=30,
            what="a finished step",
            process=running,
        )
        cancelled = flow("cancel", run.id.hex[:8])
        requested_by = utcnow()  # the request is stored by now
        assert cancelled.returncode == 0, cancelled.stderr
        assert cancelled.stdout.startswith(
            f"Cancel requested for run {run.id}; it stops at its next step boundary"
        )
        ended = running.wait(30)
    finally:
        running.kill()
    assert ended.returncode == 1
    assert "Error: flow 'e2e_patient' cancelled" in ended.stderr
    assert f"Resume it with: flow resume {run.id}" in ended.stderr
    after = stored(run.id)
    assert (
        after.status == "cancelled"
        and "was cancelled; it stopped before its next step" in after.error_message
    )
    runs = [after, *store.list_runs(parent_run_id=run.id)]
    steps = [s for r in runs for s in store.list_steps(r.id)]
    assert {s.status for s in steps} == {"completed"}  # what finished is recorded; nothing half-done
    assert not [s.step_key for s in steps if s.created_at > requested_by]  # no step started after it
    assert 1 <= len(steps) < 8 and after.step_progress == sum(s.flow_run_id == run.id for s in steps)
    assert {r.status for r in runs[1:]} <= {"cancelled", "completed"}  # its child: stopped too, or done
    again = flow("cancel", str(run.id))
    assert (again.returncode, again.stderr) == (1, f"Run {run.id} already cancelled; nothing to cancel.\n")


def test_a_run_nobody_executes_is_cancelled_at_once(cli_invoke):
    pending = create(status="pending")
    crashed = create(status="crashed", started_at=ago(hours=1), last_heartbeat=ago(hours=1))
    stale = create(status="running", started_at=ago(hours=1), last_heartbeat=ago(hours=1))
    stale_child = create(
        status="running", parent_run_id=stale.id, run_key="cli_inner", last_heartbeat=ago(hours=1)
    )
    done = create(status="completed")
    for run in (pending, crashed, stale):
        result = cli_invoke("cancel", run.id.hex[:9])
        assert (result.exit_code, result.stdout) == (0, f"Run {run.id} cancelled.\n")
        assert stored(run.id).status == "cancelled" and stored(run.id).completed_at is not None
    assert "before it started" in stored(pending.id).error_message
    assert "after its process had died" in stored(crashed.id).error_message
    assert stored(stale_child.id).status == "crashed"  # its process is gone too; not left "running"
    finished = cli_invoke("cancel", str(done.id))
    assert (finished.exit_code, finished.stderr) == (
        1,
        f"Run {done.id} already completed; nothing to cancel.\n",
    )
    assert stored(done.id).status == "completed"


class Approval(BaseModel):
    approved: bool


class Asking(BaseFlow):
    flow_name = "cli_asking"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        await Work().execute({"tag": "a"})
        answer = await self.wait_for_input("approve", Approval)
        return {"approved": answer.approved}


class AskingParent(BaseFlow):
    flow_name = "cli_asking_parent"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return await Asking().execute({})


def waiting(flow: BaseFlow) -> uuid.UUID:
    with pytest.raises(RunWaiting):
        asyncio.run(flow.execute({}))
    assert flow.run_id is not None and stored(flow.run_id).status == "waiting"
    return flow.run_id


def test_a_run_waiting_for_input_is_cancelled_at_once_and_waits_again_on_resume(cli_invoke):
    run_id = waiting(Asking())
    result = cli_invoke("cancel", run_id.hex[:9])
    assert (result.exit_code, result.stdout) == (0, f"Run {run_id} cancelled.\n"), result.output
    run = stored(run_id)
    assert run.status == "cancelled" and run.completed_at is not None and run.claimed_by is None
    assert run.error_message == "cancelled (flow cancel) while waiting for input 'approve'"
    steps = get_engine().store.list_steps(run_id)
    assert [(s.step_key, s.status) for s in steps] == [("work", "completed"), ("approve", "cancelled")]
    answered = cli_invoke("respond", str(run_id), "approve", "-i", "approved=true")
    assert answered.exit_code == 2 and "is not waiting for input (it is cancelled)" in answered.stderr
    again = cli_invoke("cancel", str(run_id))
    assert (again.exit_code, again.stderr) == (1, f"Run {run_id} already cancelled; nothing to cancel.\n")

    resumed = cli_invoke("resume", str(run_id))
    assert resumed.exit_code == 3, resumed.output  # it asks again; the step before is not run again
    assert stored(run_id).status == "waiting" and CALLS == {"a": 1}
    done = cli_invoke("respond", str(run_id), "approve", "-i", "approved=true")
    assert done.exit_code == 0 and stored(run_id).outputs == {"approved": True}


def test_cancelling_a_waiting_child_run_cancels_the_runs_that_wait_with_it(cli_invoke):
    root = waiting(AskingParent())
    [child] = get_engine().store.list_runs(parent_run_id=root)
    assert child.status == "waiting"
    result = cli_invoke("cancel", str(child.id))
    assert result.exit_code == 0, result.output
    assert (stored(root).status, stored(child.id).status) == ("cancelled", "cancelled")
    assert [s.status for s in get_engine().store.list_steps(child.id)] == ["completed", "cancelled"]


# -- flow recover / flow runs --stale -----------------------------------------------------------------
@pytest.fixture
def heartbeats() -> dict[str, RunRecord]:
    return {
        "stale": create(status="running", started_at=ago(hours=1), last_heartbeat=ago(minutes=10)),
        "older": create(status="running", started_at=ago(hours=3), last_heartbeat=ago(hours=2)),
        "live": create(status="running", started_at=ago(minutes=1), last_heartbeat=utcnow()),
        "marked": create(status="crashed", started_at=ago(hours=1), last_heartbeat=ago(hours=1)),
        "finished": create(status="completed", started_at=ago(hours=1), last_heartbeat=ago(hours=1)),
    }


def test_runs_stale_lists_the_runs_whose_heartbeat_stopped_as_crashed(cli_invoke, heartbeats):
    short = {name: run.id.hex[:8] for name, run in heartbeats.items()}
    table = cli_invoke("runs", "--stale")
    assert table.exit_code == 0
    rows = {line.split()[0]: line.split() for line in table.stdout.splitlines() if line.split()}
    assert set(rows) & set(short.values()) == {short["stale"], short["older"]}
    assert rows[short["stale"]][2] == "crashed"
    assert not [cell for cell in rows[short["stale"]] if "…" in cell]  # it is not running: no growing clock
    assert "`flow recover` marks them crashed" in table.stderr
    listed = json.loads(cli_invoke("runs", "--stale", "--json").stdout)
    assert [(r["id"], r["status"], r["stale"]) for r in listed] == [
        (str(heartbeats[name].id), "crashed", True)
        for name in ("older", "stale")  # newest first
    ]
    assert [r["id"] for r in json.loads(cli_invoke("runs", "--stale", "--json", "--limit", "1").stdout)] == [
        str(heartbeats["older"].id)
    ]
    # plain listings agree: a stale run is crashed, not running
    every = {r["id"]: (r["status"], r["stale"]) for r in json.loads(cli_invoke("runs", "--json").stdout)}
    assert every[str(heartbeats["stale"].id)] == ("crashed", True)
    assert every[str(heartbeats["marked"].id)] == ("crashed", False)
    assert every[str(heartbeats["live"].id)] == ("running", False)
    running = json.loads(cli_invoke("runs", "--status", "running", "--json").stdout)
    assert [r["id"] for r in running] == [str(heartbeats["live"].id)]
    crashed = json.loads(cli_invoke("runs", "--status", "crashed", "--json").stdout)
    assert {r["id"] for r in crashed} == {str(heartbeats[n].id) for n in ("stale", "older", "marked")}
    shown = json.loads(cli_invoke("show", str(heartbeats["stale"].id), "--json").stdout)
    assert (shown["run"]["status"], shown["run"]["stale"]) == ("crashed", True)
    # nothing was marked by looking
    assert stored(heartbeats["stale"].id).status == "running"
    refused = cli_invoke("runs", "--stale", "--status", "failed")
    assert refused.exit_code == 2 and "cannot be combined with --status" in refused.stderr


def test_recover_marks_stale_runs_crashed_and_never_a_finished_or_live_one(cli_invoke, heartbeats):
    picky = cli_invoke("recover", "--stale-after", "3600")  # only the one silent for two hours
    assert picky.exit_code == 0
    older = heartbeats["older"].id
    assert picky.stdout == f"{older} crashed (no heartbeat); resume it with: flow resume {str(older)[:8]}\n"
    result = cli_invoke("recover")
    assert result.exit_code == 0
    assert [line.split()[0] for line in result.stdout.splitlines()] == [str(heartbeats["stale"].id)]
    statuses = {name: stored(run.id).status for name, run in heartbeats.items()}
    assert statuses == {
        "stale": "crashed",
        "older": "crashed",
        "live": "running",
        "marked": "crashed",
        "finished": "completed",
    }
    assert "no heartbeat since" in stored(heartbeats["stale"].id).error_message
    again = cli_invoke("recover")
    assert (again.exit_code, again.stdout, again.stderr) == (0, "", "No stale runs.\n")
    assert cli_invoke("runs", "--stale").stdout == "No stale runs.\n"
    shown = cli_invoke("show", str(heartbeats["stale"].id)).stdout
    assert f"Resume it with: flow resume {heartbeats['stale'].id.hex[:8]}" in shown


@pytest.mark.parametrize("seconds", ["inf", "1e300"])
def test_recover_refuses_a_stale_after_too_long_to_subtract_from_now(cli_invoke, seconds):
    result = cli_invoke("recover", "--stale-after", seconds)
    assert result.exit_code == 2 and "too long a duration" in result.stderr
    assert "Traceback" not in result.output


def test_a_stale_after_setting_too_long_to_subtract_from_now_names_the_variable(monkeypatch):
    from flow_engine.config import read_settings
    from flow_engine.errors import ConfigurationError

    monkeypatch.setenv("FLOW_ENGINE_STALE_AFTER", "1e300")
    with pytest.raises(ConfigurationError, match="FLOW_ENGINE_STALE_AFTER"):
        read_settings()


# -- budgets from the command line ---------------------------------------------------------------------
PRICED, UNPRICED = "openai/gpt-4o-mini", "openai/my-local-llama"
USAGE = (1000, 1000)  # per call: 2000 tokens, $0.00075 at gpt-4o-mini's price


@pytest.mark.slow
def test_budgets_given_to_flow_run_stop_the_run_and_are_kept_on_resume(
    fake_openai: FakeOpenAI, flow_env, tmp_path, cli_invoke
):
    import litellm

    price = litellm.model_cost["gpt-4o-mini"]
    per_call = USAGE[0] * price["input_cost_per_token"] + USAGE[1] * price["output_cost_per_token"]
    assert per_call == pytest.approx(0.00075)
    fake_openai.answer("Say something costly", Reply("spent", usage=USAGE))
    use_fake_openai(
        fake_openai.base_url, tmp_path, database_url=f"sqlite:///{tmp_path / 'flow.db'}", model=PRICED
    )
    fake_openai.answer("Say something costly", Reply("spent", usage=USAGE))
    target = f"{FLOWS_FILE}:Spender"
    # one run in a real `flow run` process; the others in this process meanwhile (each process spends
    # seconds importing litellm), through the same click command
    env = flow_env(
        FLOW_ENGINE_MODEL=PRICED, FLOW_ENGINE_API_BASE=fake_openai.base_url, FLOW_ENGINE_API_KEY=API_KEY
    )
    args = ["run", target, "-i", "tag=cost", "--max-cost", "0.001", "--json"]
    process = Running([*flow_command(), *args], env, tmp_path, "cost")
    try:
        ended: dict[str, Any] = {
            "tokens": cli_invoke("run", target, "-i", "tag=tokens", "--max-tokens", "2500", "--json"),
            "unpriced": cli_invoke(
                "run", target, "-i", "tag=unpriced", "-m", UNPRICED, "--max-cost", "1", "--json"
            ),
        }
        ended["cost"] = cost_run = process.wait(90)
    finally:
        process.kill()
    assert cost_run.returncode == 1 and ended["tokens"].exit_code == ended["unpriced"].exit_code == 1
    assert "Traceback" not in cost_run.stderr
    results = {name: json.loads(done.stdout) for name, done in ended.items()}
    assert {name: r["status"] for name, r in results.items()} == {k: "failed" for k in results}

    # max_cost: stopped before the third step once two calls had cost $0.0015
    cost = results["cost"]
    assert cost["error"].startswith(
        "BudgetExceeded: budget exceeded: cost $0.001500 reached max_cost $0.001000; "
        "the run stopped before its next step (resume it with a higher --max-cost)"
    )
    assert cost["total_cost"] == pytest.approx(2 * per_call) and cost["total_tokens"] == 4000
    # max_tokens: the same boundary, saying what was spent
    assert results["tokens"]["error"].startswith(
        "BudgetExceeded: budget exceeded: 4000 tokens reached max_tokens 2500; cost $0.001500;"
    )
    # an unpriced model under a dollar budget: stopped after its first call, never counted as $0
    unpriced = results["unpriced"]
    assert unpriced["error"].startswith(
        f"BudgetExceeded: budget cannot be checked: 1 call(s) of unknown cost (no known price for model "
        f"'{UNPRICED}'), so max_cost $1.000000 cannot bound this run"
    )
    assert (unpriced["total_cost"], unpriced["unpriced_calls"], unpriced["total_tokens"]) == (None, 1, 2000)
    assert "cost unknown (1 unpriced call(s))" in ended["unpriced"].stderr
    assert "Resume it with: flow resume" in cost_run.stderr
    steps = {name: get_engine().store.list_steps(uuid.UUID(r["run_id"])) for name, r in results.items()}
    assert {name: len(s) for name, s in steps.items()} == {"cost": 2, "tokens": 2, "unpriced": 1}
    shown = cli_invoke("show", results["unpriced"]["run_id"]).stdout
    assert "unknown (1 call(s) without a known price)" in shown and "budget cannot be checked" in shown

    # resuming keeps each run's model and budget unless new ones are given
    asked_before = Counter(r.text for r in fake_openai.chat_requests)
    kept = cli_invoke("resume", results["unpriced"]["run_id"], "--json")
    assert kept.exit_code == 1 and "budget cannot be checked" in json.loads(kept.stdout)["error"]
    raised = cli_invoke("resume", results["cost"]["run_id"], "--max-cost", "1", "--json")
    assert raised.exit_code == 0, raised.output
    assert json.loads(raised.stdout)["outputs"] == {"answers": ["spent"] * 3}
    by_tokens = cli_invoke("resume", results["unpriced"]["run_id"], "--max-tokens", "100000", "--json")
    assert by_tokens.exit_code == 0, by_tokens.output  # a budget in tokens replaces the dollar one
    finished = json.loads(by_tokens.stdout)
    assert (finished["unpriced_calls"], finished["total_cost"]) == (3, None)  # still its own model
    asked = Counter(r.text for r in fake_openai.chat_requests) - asked_before
    assert sorted(asked.items()) == sorted(
        {
            f"[B{n} {tag}] Say something costly.": 1
            for n, tag in ((3, "cost"), (2, "unpriced"), (3, "unpriced"))
        }.items()
    )  # the completed steps were not asked again
    models = {
        r.model for r in get_engine().store.list_llm_requests(flow_run_id=uuid.UUID(finished["run_id"]))
    }
    assert models == {UNPRICED}
    shown = cli_invoke("show", finished["run_id"]).stdout
    assert "unknown (3 call(s) without a known price)" in shown
