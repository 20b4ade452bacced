"""`flow run` against a failing or slow OpenAI-compatible server: each error printed once, whole, naming
what happened; the output limit option; the "still waiting" progress line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.fake_openai_server import Fault, Reply, run_flow_cli

FLOWS = """
from typing import Any
from pydantic import BaseModel
from flow_engine import BaseFlow, StructuredStep, UnstructuredStep


class Say(UnstructuredStep):
    step_name = "say"
    model = "openai/gpt-4o-mini"

    class Inputs(BaseModel):
        prompt: str


class Point(BaseModel):
    x: int
    y: int


class Locate(StructuredStep):
    step_name = "locate"
    model = "openai/my-local-model"
    Outputs = Point

    class Inputs(BaseModel):
        prompt: str


class NoPrompt(UnstructuredStep):
    step_name = "no_prompt"

    class Inputs(BaseModel):
        text: str = "x"


class SayFlow(BaseFlow):
    flow_name = "say_flow"

    class Inputs(BaseModel):
        topic: str

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"text": (await Say().execute({"prompt": inputs["topic"]})).output_content}


class LocateFlow(BaseFlow):
    flow_name = "locate_flow"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"point": (await Locate().execute({"prompt": "where?"})).output_content.model_dump()}


class NoPromptFlow(BaseFlow):
    flow_name = "no_prompt_flow"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"text": (await NoPrompt().execute({})).output_content}
"""


@pytest.fixture
def flows(tmp_path: Path) -> str:
    (tmp_path / "llm_flows.py").write_text(textwrap.dedent(FLOWS), encoding="utf-8")
    return str(tmp_path / "llm_flows.py")


FAST = {"FLOW_ENGINE_RETRY_INITIAL_DELAY": "0.01", "FLOW_ENGINE_RETRY_MAX_DELAY": "0.05"}


@pytest.mark.slow
def test_connection_refused_is_named_and_printed_once(tmp_path, flows, refused_base_url):
    result = run_flow_cli(refused_base_url, tmp_path, "run", f"{flows}:SayFlow", "-i", "topic=x", **FAST)
    assert result.returncode == 1
    final = [line for line in result.stderr.splitlines() if "retry" not in line]  # retry lines: one each
    assert "\n".join(final).count(f"connection refused at {refused_base_url}") == 1, result.stderr
    assert [line for line in final if line.startswith("✗ say failed: LLMRequestError")]
    assert "HTTP 500" not in result.stderr and "InternalServerError" not in result.stderr
    assert "Error: flow 'say_flow' failed at step 'say' (the error is above)" in result.stderr


@pytest.mark.slow
def test_a_timeout_says_so_and_how_long_it_took(fake_openai, tmp_path, flows):
    fake_openai.fail_next(Fault.hang(20), times=5)
    result = run_flow_cli(
        fake_openai.base_url,
        tmp_path,
        "run",
        f"{flows}:SayFlow",
        "-i",
        "topic=x",
        FLOW_ENGINE_REQUEST_TIMEOUT="0.5",
        **FAST,
    )
    assert result.returncode == 1
    assert "no answer within 0.5 s" in result.stderr and "HTTP 408" not in result.stderr
    assert "gave up after 2 attempt(s) in " in result.stderr
    assert "FLOW_ENGINE_MAX_OUTPUT_TOKENS" in result.stderr


@pytest.mark.slow
def test_a_structured_failure_is_printed_whole_once(fake_openai, tmp_path, flows):
    fake_openai.script(*[Reply(json={"x": "not a number"})] * 3)
    result = run_flow_cli(fake_openai.base_url, tmp_path, "run", f"{flows}:LocateFlow", **FAST)
    assert result.returncode == 1
    assert result.stderr.count("last validation errors:") == 1, result.stderr
    assert "- y: Field required" in result.stderr  # the part after "last validation errors:"
    assert "last answer:" in result.stderr


def test_a_missing_prompt_gets_no_offline_model_notice(tmp_path, flows, refused_base_url):
    result = run_flow_cli(refused_base_url, tmp_path, "run", f"{flows}:NoPromptFlow")
    assert result.returncode == 2
    assert "has no prompt_file and no 'prompt' input" in result.stderr
    assert "offline model" not in result.stderr


def test_invalid_inputs_of_a_file_flow_do_not_point_at_flow_list(tmp_path, flows, refused_base_url):
    result = run_flow_cli(refused_base_url, tmp_path, "run", f"{flows}:SayFlow")
    assert result.returncode == 2
    assert "flow list" not in result.stderr
    assert "flow 'say_flow' takes: topic" in result.stderr
    wrong = run_flow_cli(refused_base_url, tmp_path, "run", f"{flows}:SayFlow", "-i", "topc=x")
    assert wrong.returncode == 2 and "flow list" not in wrong.stderr and "topic" in wrong.stderr


@pytest.mark.slow
def test_max_output_tokens_option_is_sent_to_the_model(fake_openai, tmp_path, flows):
    fake_openai.script(Reply("short"))
    result = run_flow_cli(
        fake_openai.base_url,
        tmp_path,
        "run",
        f"{flows}:SayFlow",
        "-i",
        "topic=x",
        "--max-output-tokens",
        "77",
    )
    assert result.returncode == 0, result.stderr
    assert fake_openai.chat_requests[-1].body["max_tokens"] == 77


def test_max_output_tokens_option_is_refused_with_background(tmp_path, flows, refused_base_url):
    result = run_flow_cli(
        refused_base_url,
        tmp_path,
        "run",
        f"{flows}:SayFlow",
        "-i",
        "topic=x",
        "--background",
        "--max-output-tokens",
        "77",
    )
    assert result.returncode == 2 and "FLOW_ENGINE_MAX_OUTPUT_TOKENS" in result.stderr


@pytest.mark.slow
def test_a_slow_call_shows_that_it_is_still_waiting(fake_openai, tmp_path, monkeypatch, cli_invoke, flows):
    import flow_engine.cli.progress as progress
    from tests.fake_openai_server import use_fake_openai

    monkeypatch.setattr(progress, "WAITING_AFTER", 0.3)
    monkeypatch.setattr(progress, "WAITING_EVERY", 0.3)
    use_fake_openai(fake_openai.base_url, tmp_path)
    fake_openai.script(Reply("late", delay=1.2))
    result = cli_invoke("run", f"{flows}:SayFlow", "-i", "topic=x")
    assert result.exit_code == 0, result.stderr
    waiting = [line for line in result.stderr.splitlines() if "waiting for openai/gpt-4o-mini" in line]
    assert waiting and "say waiting for openai/gpt-4o-mini · 0s" not in waiting[-1]
    assert "(timeout 5s)" in waiting[0]


@pytest.mark.slow
def test_flow_show_lists_each_attempt_with_its_http_status(fake_openai, tmp_path, flows):
    fake_openai.fail_next(503).script(Reply("fine"))
    result = run_flow_cli(
        fake_openai.base_url, tmp_path, "run", f"{flows}:SayFlow", "-i", "topic=x", "--json", **FAST
    )
    assert result.returncode == 0, result.stderr
    import json

    run_id = json.loads(result.stdout)["run_id"]
    shown = run_flow_cli(fake_openai.base_url, tmp_path, "show", run_id)
    assert shown.returncode == 0, shown.stderr
    table = shown.stdout[shown.stdout.index("LLM requests") :]
    rows = [line.split() for line in table.splitlines() if line.strip().startswith("say")]
    assert [(row[1], row[3], row[4]) for row in rows] == [("1", "failed", "503"), ("2", "completed", "200")]
    as_json = json.loads(run_flow_cli(fake_openai.base_url, tmp_path, "show", run_id, "--json").stdout)
    assert [r["http_status"] for r in as_json["llm_requests"]] == [503, 200]


@pytest.mark.slow
def test_traceback_of_a_key_echoing_server_shows_no_key(fake_openai, tmp_path, flows):
    """``flow run --traceback`` prints the whole chain (litellm's and the SDK's exceptions too), each
    redacted: the key the server echoes back is printed nowhere, and no row holds it."""
    key = "sk-cli-echo-0123456789abcdefghij"
    fake_openai.fail_next(Fault.status(401, echo_headers=True))
    result = run_flow_cli(
        fake_openai.base_url,
        tmp_path,
        "run",
        f"{flows}:SayFlow",
        "-i",
        "topic=x",
        "--traceback",
        FLOW_ENGINE_API_KEY=key,
        **FAST,
    )
    assert result.returncode == 1
    assert fake_openai.chat_requests[0].headers["Authorization"] == f"Bearer {key}"
    assert "Traceback (most recent call last)" in result.stderr
    assert "ProviderError: litellm." in result.stderr  # the chained provider exception, redacted
    assert '"Authorization": "Bearer ***"' in result.stderr
    assert key not in result.stderr + result.stdout and key[8:24] not in result.stderr
    assert key[8:24].encode() not in (tmp_path / "runs.db").read_bytes()


def test_an_api_base_with_credentials_is_a_usage_error(tmp_path, flows, fake_openai):
    host = fake_openai.base_url.split("://", 1)[1]
    result = run_flow_cli(f"http://me:hunter22@{host}", tmp_path, "run", f"{flows}:SayFlow", "-i", "topic=x")
    assert result.returncode == 2, result.stderr
    assert "FLOW_ENGINE_API_BASE: must not contain user:password@" in result.stderr
    assert "hunter22" not in result.stderr and "Traceback" not in result.stderr
    assert fake_openai.chat_requests == []
