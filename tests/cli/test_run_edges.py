"""`flow run` / `flow resume` / `flow recover` at the edges: hostile inputs, unknown models, bad
budgets, usage errors inside a run, raising hooks (issues 20 and 22). No traceback, exit codes as
documented, no run or step row left `running`."""

from __future__ import annotations

import json
import textwrap

import pytest

from flow_engine.engine import get_engine
from flow_engine.plugin import hookimpl

FLOWS = textwrap.dedent(
    """
    from typing import Any
    from pydantic import BaseModel
    from flow_engine.flows import BaseFlow
    from flow_engine.steps import BaseStep

    class Needs(BaseStep):
        class Inputs(BaseModel):
            n: int

        async def run(self, inputs):
            return inputs.n

    class BadCall(BaseFlow):
        flow_name = "bad_call"

        async def _execute_flow_logic(self, inputs):
            await Needs().execute({"n": "not a number"})
            return {}

    class Bytes(BaseFlow):
        flow_name = "bytes_flow"

        async def _execute_flow_logic(self, inputs):
            return {"b": b"raw"}

    class Anything(BaseFlow):
        flow_name = "anything"

        class Inputs(BaseModel):
            x: Any = None

        async def _execute_flow_logic(self, inputs):
            return {"x": inputs["x"]}
    """
)


@pytest.fixture
def edges(tmp_path):
    path = tmp_path / "edges.py"
    path.write_text(FLOWS, encoding="utf-8")
    return path


def no_running_rows():
    store = get_engine().store
    runs = store.list_runs(limit=1000)
    for run in runs:
        assert run.status in ("completed", "failed", "cancelled")
        assert all(s.status in ("completed", "failed", "cancelled") for s in store.list_steps(run.id))
    return runs


@pytest.mark.parametrize(
    "text",
    ['{"x": ' * 1000 + "1" + "}" * 1000, '{"x": "\\ud800"}', '{"x": "a\\u0000"}', '{"x": NaN}'],
    ids=["deep", "surrogate", "nul", "nan"],
)
def test_hostile_inputs_file_is_exit_2_with_nothing_recorded(cli_invoke, edges, tmp_path, text):
    (tmp_path / "in.json").write_text(text, encoding="utf-8")
    result = cli_invoke("run", f"{edges}:Anything", "--inputs-file", str(tmp_path / "in.json"), "--json")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.stderr and "invalid inputs" in result.stderr
    assert json.loads(result.stdout)["status"] == "invalid"
    assert get_engine().store.list_runs() == []
    assert cli_invoke("runs", "--json").exit_code == 0  # the history stays readable


def test_an_unknown_model_is_a_usage_error_before_the_run(cli_invoke, edges):
    result = cli_invoke("run", f"{edges}:Anything", "-m", "no-such-model-xyz")
    assert result.exit_code == 2
    assert "unknown model 'no-such-model-xyz'" in result.stderr and "Resume it" not in result.stderr
    assert get_engine().store.list_runs() == []


@pytest.mark.parametrize("bad", ["nan", "inf", "-1"])
def test_a_budget_that_cannot_stop_a_run_is_refused(cli_invoke, edges, bad):
    result = cli_invoke("run", f"{edges}:Anything", "--max-cost", bad)
    assert result.exit_code == 2 and "not an amount of USD" in result.stderr
    assert get_engine().store.list_runs() == []


def test_recover_below_the_heartbeat_interval_is_refused(cli_invoke):
    assert get_engine().store.list_runs() == []  # the database exists: reading commands refuse a missing one
    result = cli_invoke("recover", "--stale-after", "1")
    assert result.exit_code == 2 and "would mark live runs crashed" in result.stderr


def test_a_step_called_with_invalid_inputs_fails_the_run_exit_2_without_a_plain_resume_hint(
    cli_invoke, edges
):
    result = cli_invoke("run", f"{edges}:BadCall")
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    assert "invalid inputs for step 'needs'" in result.stderr
    assert "Fix the cause above first" in result.stderr and "Resume it with" not in result.stderr
    [run] = no_running_rows()
    assert run.status == "failed"
    [step] = get_engine().store.list_steps(run.id)
    assert step.status == "failed"


def test_unstorable_outputs_fail_the_run_exit_1(cli_invoke, edges):
    result = cli_invoke("run", f"{edges}:Bytes")
    assert result.exit_code == 1 and "cannot be stored" in result.stderr and "Traceback" not in result.stderr
    [run] = no_running_rows()
    assert run.status == "failed"


def test_a_raising_after_flow_hook_does_not_change_the_exit_code(cli_invoke, edges):
    class Broken:
        @hookimpl
        def after_flow(self, event):
            raise RuntimeError("audit down")

    get_engine().plugins.register(Broken(), name="broken-audit")
    with pytest.warns(RuntimeWarning, match="after_flow hook raised RuntimeError: audit down"):
        result = cli_invoke("run", f"{edges}:Anything", "-i", "x=1", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["outputs"] == {"x": 1}
    [run] = no_running_rows()
    assert run.status == "completed"
