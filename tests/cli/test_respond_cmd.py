"""Human input across processes: `flow run` stops at wait_for_input and exits 3 saying how to answer;
`flow runs --status waiting` and `flow show` show the wait; `flow respond`, in another process,
refuses a bad answer (exit 2, still waiting) and continues the run with a good one, with no LLM call
repeated (the fake server counts them)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

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
