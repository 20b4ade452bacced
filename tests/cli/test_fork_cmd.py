"""``flow fork``: --list, a fork with a changed input (JSON result), `flow show` naming the original,
and mistakes as exit code 2."""

from __future__ import annotations

import asyncio
import json

import pytest

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
