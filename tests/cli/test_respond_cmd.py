"""Human input across processes: `flow run` stops at wait_for_input and exits 3 saying how to answer;
`flow runs --status waiting` and `flow show` show the wait; `flow respond`, in another process,
refuses a bad answer (exit 2, still waiting) and continues the run with a good one, with no LLM call
repeated (the fake server counts them)."""

from __future__ import annotations

import asyncio
import json
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from flow_engine import BaseFlow, BaseStep, RunWaiting
from flow_engine.engine import get_engine
from tests.fake_openai_server import run_flow_cli

FLOWS = """
from typing import Any
from pydantic import BaseModel
from flow_engine import BaseFlow, UnstructuredStep


class Write(UnstructuredStep):
    step_name = "write"

    class Inputs(BaseModel):
        prompt: str


class Approval(BaseModel):
    approved: bool
    reviewer: str


class Review(BaseFlow):
    flow_name = "cli_review"
    model = "openai/gpt-4o-mini"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        draft = (await Write().execute({"prompt": "draft a haiku"})).output_content
        answer = await self.wait_for_input("approve", Approval, prompt="Publish it?")
        polish = f"polish for {answer.reviewer}: {draft[:20]}"
        final = (await Write().execute({"prompt": polish})).output_content
        return {"approved": answer.approved, "final": final}
"""


@pytest.mark.slow
def test_a_run_waits_in_one_process_and_is_answered_from_another(fake_openai, tmp_path: Path):
    (tmp_path / "review.py").write_text(textwrap.dedent(FLOWS), encoding="utf-8")
    started = run_flow_cli(
        fake_openai.base_url, tmp_path, "run", f"{tmp_path / 'review.py'}:Review", "--json"
    )
    assert started.returncode == 3, started.stderr
    result = json.loads(started.stdout)
    run_id = result["run_id"]
    assert result["status"] == "waiting" and result["outputs"] is None
    assert (
        f"Answer with: flow respond {run_id} approve --input approved=... --input reviewer=..."
        in started.stderr
    )

    listed = run_flow_cli(fake_openai.base_url, tmp_path, "runs", "--status", "waiting", "--json")
    assert [r["id"] for r in json.loads(listed.stdout)] == [run_id]
    shown = run_flow_cli(fake_openai.base_url, tmp_path, "show", run_id)
    flat = " ".join(shown.stdout.split())
    assert "waiting for input 'approve' since" in flat and "Publish it?" in flat
    assert f"flow respond {run_id} approve (fields: approved, reviewer)" in flat

    bad = run_flow_cli(
        fake_openai.base_url, tmp_path, "respond", run_id[:8], "approve", "-i", "approved=maybe"
    )
    assert bad.returncode == 2 and "approved" in bad.stderr and "reviewer" in bad.stderr, bad.stderr
    assert "Traceback" not in bad.stderr

    answered = run_flow_cli(
        fake_openai.base_url,
        tmp_path,
        "respond",
        run_id[:8],
        "approve",
        "-i",
        "approved=true",
        "-i",
        "reviewer=ana",
        "--json",
    )
    assert answered.returncode == 0, answered.stderr
    done = json.loads(answered.stdout)
    assert (done["run_id"], done["status"], done["outputs"]["approved"]) == (run_id, "completed", True)
    assert fake_openai.chat_requests[0].text == "draft a haiku"
    assert len(fake_openai.chat_requests) == 2  # the draft once, then the polish

    again = run_flow_cli(
        fake_openai.base_url,
        tmp_path,
        "respond",
        run_id,
        "approve",
        "-i",
        "approved=true",
        "-i",
        "reviewer=bo",
    )
    assert again.returncode == 2 and "is not waiting for input" in again.stderr


# -- answers refused before anything is written (in this process: no LLM, the store looked at) ----------
class Note(BaseStep):
    step_name = "note"

    async def run(self, inputs: Any) -> dict[str, Any]:
        return dict(inputs)


class Decision(BaseModel):
    approved: bool
    reviewer: str = ""


class Gate(BaseFlow):
    flow_name = "cli_gate"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        await Note().execute({"before": True})
        answer = await self.wait_for_input("approve", Decision, prompt="Go?")
        await Note().execute({"reviewer": answer.reviewer})
        return {"approved": answer.approved, "reviewer": answer.reviewer}


def waiting_gate() -> uuid.UUID:
    flow = Gate()
    with pytest.raises(RunWaiting):
        asyncio.run(flow.execute({}))
    assert flow.run_id is not None
    return flow.run_id


def recorded(run_id: uuid.UUID) -> list[str]:
    store = get_engine().store
    return [
        store.load_run(run_id).model_dump_json(),
        *(s.model_dump_json() for s in store.list_steps(run_id)),
    ]


@pytest.mark.parametrize(
    ("text", "problem"),
    [("ana\x00", 'text holds a NUL character ("\\x00")'), ("ana\ud800", "text holds a lone surrogate")],
)
def test_an_answer_no_database_can_store_is_refused_and_the_run_still_waits(
    cli_invoke, tmp_path, text, problem
):
    run_id = waiting_gate()
    before = recorded(run_id)
    answer = tmp_path / "answer.json"
    answer.write_text(json.dumps({"approved": True, "reviewer": text}), encoding="utf-8")  # \u0000, \ud800
    for given in (
        ["--inputs-file", str(answer)],
        ["-i", "approved=true", "-i", f"reviewer={text}"],
    ):
        result = cli_invoke("respond", str(run_id), "approve", *given)
        assert result.exit_code == 2, result.output
        assert f"  - reviewer: {problem}" in result.stderr
        assert "Traceback" not in result.output
        assert recorded(run_id) == before  # nothing stored: the run still waits

    answered = cli_invoke("respond", str(run_id), "approve", "-i", "approved=true", "-i", "reviewer=ana")
    assert answered.exit_code == 0, answered.stderr
    assert get_engine().store.load_run(run_id).status == "completed"


def test_an_unknown_answer_field_is_refused_naming_the_closest_real_one(cli_invoke):
    run_id = waiting_gate()
    before = recorded(run_id)
    typo = cli_invoke("respond", str(run_id), "approve", "-i", "approved=true", "-i", "reviwer=ana")
    assert typo.exit_code == 2, typo.output
    assert typo.stderr == (
        "Error: invalid inputs for the answer to 'approve':\n"
        "  - reviwer: not a field of the answer; did you mean 'reviewer'?\n"
    )
    far = cli_invoke("respond", str(run_id), "approve", "-i", "approved=true", "-i", "colour=red")
    assert far.exit_code == 2
    assert "  - colour: not a field of the answer; its fields are: approved, reviewer" in far.stderr
    assert recorded(run_id) == before  # nothing stored: the run still waits
