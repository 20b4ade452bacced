"""``flow fork``: --list, a fork with a changed input (JSON result), `flow show` naming the original,
and mistakes as exit code 2."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from flow_engine import BaseFlow, BaseStep
from flow_engine.engine import get_engine
from tests.core.test_fork import Chain
from tests.fake_openai_server import use_fake_openai


@pytest.fixture
def llm(fake_openai, tmp_path):
    use_fake_openai(fake_openai.base_url, tmp_path)
    return fake_openai


def test_flow_fork_on_the_command_line(llm, cli_invoke):
    original = Chain()
    asyncio.run(original.execute({"topic": "glaciers"}))
    listed = cli_invoke("fork", str(original.run_id), "--list")
    assert listed.exit_code == 0 and "ask#2" in listed.stdout and "ask#3" in listed.stdout

    forked = cli_invoke("fork", str(original.run_id), "--from", "ask#3", "-i", "tone=dry", "--json")
    assert forked.exit_code == 0, forked.stderr
    result = json.loads(forked.stdout)
    assert result["status"] == "completed" and result["run_id"] != str(original.run_id)
    assert len(llm.chat_requests) == 5
    shown = cli_invoke("show", result["run_id"])
    assert f"forked from {original.run_id} at step ask#3 (changed inputs: tone)" in " ".join(
        shown.stdout.split()
    )

    wrong = cli_invoke("fork", str(original.run_id), "--from", "nope")
    assert wrong.exit_code == 2 and "has no step 'nope'" in wrong.stderr
    missing = cli_invoke("fork", str(original.run_id))
    assert missing.exit_code == 2 and "--from STEP" in missing.stderr


class Shout(BaseStep):
    step_name = "shout"

    async def run(self, inputs: Any) -> str:
        return str(inputs["text"]).upper()


class Twice(BaseFlow):
    flow_name = "cli_twice"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        first = await Shout().execute({"text": "a"})
        second = await Shout().execute({"text": "b"})
        return {"said": [first.output_content, second.output_content]}


def test_fork_refuses_an_unknown_model_before_the_new_run_is_written(cli_invoke):
    original = Twice()
    asyncio.run(original.execute({}))
    result = cli_invoke("fork", str(original.run_id), "--from", "shout#2", "-m", "garbage", "--json")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("Error: unknown model 'garbage': litellm cannot tell which provider")
    assert json.loads(result.stdout)["run_id"] is None
    assert [r.id for r in get_engine().store.list_runs(limit=10)] == [original.run_id]  # no new run
