"""StructuredStep through litellm's real HTTP path: native JSON schema, JSON mode, fallbacks, re-asks."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel, Field

from flow_engine import BaseFlow, StructuredStep
from flow_engine.engine import get_engine
from flow_engine.errors import StructuredOutputError
from flow_engine.llm.calls import LLMRequestError
from flow_engine.plugin import RunStatus
from tests.fake_openai_server import Reply, run_flow_cli, use_fake_openai

pytestmark = pytest.mark.usefixtures("no_network")  # 127.0.0.1 only

VALID = {"title": "Cats", "summary": "Cats sleep a lot.", "key_points": ["sleep", "purr"]}


class Summary(BaseModel):
    title: str = Field(..., description="Generated title")
    summary: str
    key_points: list[str]


class Summarize(StructuredStep):
    step_name = "summarize"
    model = "openai/gpt-4o-mini"  # litellm believes it supports response_schema
    Outputs = Summary

    class Inputs(BaseModel):
        prompt: str


class SummarizeLocal(Summarize):
    step_name = "summarize_local"
    model = "openai/my-local-model"  # unknown to litellm: JSON mode


class SummaryFlow(BaseFlow):
    flow_name = "summary_flow"
    step: type[StructuredStep] = Summarize

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        result = await self.step().execute({"prompt": "Summarize: cats sleep."})
        return {"summary": result.output_content.model_dump(), "metadata": result.metadata}


@pytest.fixture
def online(fake_openai, tmp_path):
    use_fake_openai(fake_openai.base_url, tmp_path)
    return fake_openai


def schema_in(text: str) -> bool:
    return "```json-schema" in text and '"key_points"' in text


async def test_native_structured_output_sends_the_json_schema(online):
    online.script(Reply(json=VALID))
    result = await Summarize().execute({"prompt": "Summarize: cats sleep."})
    assert isinstance(result.output_content, Summary)
    assert result.output_content.model_dump() == VALID
    assert result.metadata["structured_mode"] == "native"
    [sent] = online.chat_requests
    fmt = sent.body["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "Summary"
    assert set(fmt["json_schema"]["schema"]["properties"]) == {"title", "summary", "key_points"}
    assert not schema_in(sent.text)  # the schema travels in response_format, not in the prompt


async def test_json_mode_puts_the_schema_in_the_prompt(online):
    online.script(Reply(json=VALID))
    result = await SummarizeLocal().execute({"prompt": "Summarize: cats sleep."})
    assert result.output_content == Summary(**VALID)
    assert result.metadata["structured_mode"] == "json"
    [sent] = online.chat_requests
    assert sent.body["response_format"] == {"type": "json_object"}
    assert sent.messages[0]["role"] == "system" and schema_in(sent.messages[0]["content"])
    assert sent.messages[-1] == {"role": "user", "content": "Summarize: cats sleep."}


async def test_the_schema_joins_an_existing_system_prompt(online):
    class WithSystem(SummarizeLocal):
        system_prompt = "You are terse."

    online.script(Reply(json=VALID))
    await WithSystem().execute({"prompt": "Summarize: cats sleep."})
    [sent] = online.chat_requests
    assert [m["role"] for m in sent.messages] == ["system", "user"]
    assert sent.messages[0]["content"].startswith("You are terse.")
    assert schema_in(sent.messages[0]["content"])


async def test_a_server_rejecting_json_schema_gets_json_mode_and_it_is_remembered(online):
    online.reject_json_schema = True
    online.script(Reply(json=VALID), Reply(json=VALID))
    first = await Summarize().execute({"prompt": "Summarize: cats sleep."})
    assert first.output_content == Summary(**VALID)
    assert first.metadata["structured_mode"] == "json"
    rejected, accepted = online.chat_requests
    assert rejected.response_format_type == "json_schema" and rejected.outcome == "400"
    assert accepted.response_format_type == "json_object" and schema_in(accepted.text)
    failed, completed = get_engine().store.list_llm_requests()
    assert failed.status == "failed" and "HTTP 400" in failed.error_message
    assert completed.status == "completed"
    assert first.metadata["llm_calls"] == 1

    second = await Summarize().execute({"prompt": "Summarize: dogs bark."})
    assert second.metadata["structured_mode"] == "json"
    assert len(online.chat_requests) == 3  # straight to JSON mode this time
    assert online.chat_requests[-1].response_format_type == "json_object"


async def test_a_bad_request_unrelated_to_the_schema_is_not_remembered_as_a_rejection(online):
    online.fail_next(400, times=3, message="This model's maximum context length is 10 tokens")
    with pytest.raises(LLMRequestError, match="maximum context length"):
        await Summarize().execute({"prompt": "Summarize: cats sleep."})
    online.script(Reply(json=VALID))
    result = await Summarize().execute({"prompt": "short"})
    assert result.metadata["structured_mode"] == "native"


async def test_a_server_rejecting_json_mode_too_gets_the_schema_in_the_prompt_only(online):
    online.fail_next(400, message="response_format is not supported by this server")
    online.script(Reply(json=VALID))
    result = await SummarizeLocal().execute({"prompt": "Summarize: cats sleep."})
    assert result.metadata["structured_mode"] == "prompt"
    rejected, accepted = online.chat_requests
    assert rejected.response_format_type == "json_object"
    assert "response_format" not in accepted.body and schema_in(accepted.text)


async def test_forced_native_mode_does_not_fall_back(online):
    class Native(SummarizeLocal):
        structured_output = "native"

    online.reject_json_schema = True
    with pytest.raises(LLMRequestError, match="HTTP 400"):
        await Native().execute({"prompt": "x"})
    assert [r.response_format_type for r in online.chat_requests] == ["json_schema"]


async def test_an_invalid_answer_is_re_asked_with_the_validation_errors(online):
    invalid = {"title": "Cats", "key_points": "sleep"}
    online.script(Reply(json=invalid, usage=(10, 5)), Reply(json=VALID, usage=(30, 8)))
    result = await Summarize().execute({"prompt": "Summarize: cats sleep."})
    assert result.output_content == Summary(**VALID)
    first, second = online.chat_requests
    assert len(second.messages) == len(first.messages) + 2
    assert second.messages[-2] == {"role": "assistant", "content": json.dumps(invalid)}
    reask = second.messages[-1]["content"]
    assert reask.startswith("Your answer did not validate")
    assert "- summary: Field required" in reask
    assert "- key_points: Input should be a valid array" in reask
    assert result.metadata["tokens_used"] == 15 + 38  # both answers were paid for
    assert result.metadata["llm_calls"] == 2


async def test_an_answer_that_is_not_json_is_re_asked(online):
    online.script(Reply("Sure! Here is a summary of cats."), Reply(json=VALID))
    result = await SummarizeLocal().execute({"prompt": "x"})
    assert result.output_content == Summary(**VALID)
    assert "Invalid JSON" in online.chat_requests[1].messages[-1]["content"]


async def test_json_in_a_fence_or_with_prose_around_it_is_accepted(online):
    online.script(
        Reply(f"```json\n{json.dumps(VALID)}\n```"),
        Reply(f"Here you go:\n{json.dumps(VALID)}\nHope it helps."),
    )
    assert (await SummarizeLocal().execute({"prompt": "x"})).output_content == Summary(**VALID)
    assert (await SummarizeLocal().execute({"prompt": "y"})).output_content == Summary(**VALID)
    assert len(online.chat_requests) == 2


async def test_exhausted_re_asks_fail_the_step_with_the_last_validation_errors(online):
    class OneReask(Summarize):
        max_reasks = 1

    class Flow(SummaryFlow):
        step = OneReask

    online.script(Reply(json={"title": "a"}), Reply(json={"title": "b", "summary": "s"}))
    flow = Flow()
    with pytest.raises(StructuredOutputError) as info:
        await flow.execute({})
    message = str(info.value)
    assert "gave no valid Summary in 2 answer(s) (1 re-ask(s) allowed)" in message
    assert "- key_points: Field required" in message
    assert "- summary" not in message  # those are the *last* answer's errors
    assert info.value.last_answer == json.dumps({"title": "b", "summary": "s"})
    assert len(online.chat_requests) == 2
    store = get_engine().store
    run = store.get_run(flow.run_id)
    [step] = store.list_steps(flow.run_id)
    assert run.status == step.status == RunStatus.FAILED
    assert step.error_message.startswith("StructuredOutputError: ")
    assert "key_points: Field required" in step.error_message
    assert step.tokens_used > 0  # the answers were paid for even though none validated


async def test_max_reasks_setting_is_the_default(fake_openai, tmp_path):
    use_fake_openai(fake_openai.base_url, tmp_path, structured_max_reasks=0)
    fake_openai.script(Reply(json={}), Reply(json=VALID))
    with pytest.raises(StructuredOutputError, match="in 1 answer"):
        await Summarize().execute({"prompt": "x"})
    assert len(fake_openai.chat_requests) == 1


class Profile(BaseModel):
    name: str
    nickname: str | None = None
    tags: list[str] = []
    age: int | None = Field(default=None, ge=0)


class ProfileStep(StructuredStep):
    Outputs = Profile

    class Inputs(BaseModel):
        prompt: str


@pytest.mark.parametrize("model", ["openai/gpt-4o-mini", "openai/my-local-model"])
async def test_optional_fields_stay_optional(online, model):
    class Step(ProfileStep):
        pass

    Step.model = model
    online.script(
        Reply(json={"name": "Ada"}), Reply(json={"name": "Bob", "nickname": None, "tags": [], "age": None})
    )
    first = await Step().execute({"prompt": "who?"})
    second = await Step().execute({"prompt": "who?"})
    assert first.output_content == Profile(name="Ada")
    assert second.output_content == Profile(name="Bob")
    assert len(online.chat_requests) == 2  # no re-ask for leaving optional fields out
    if model == "openai/gpt-4o-mini":
        schema = online.chat_requests[0].body["response_format"]["json_schema"]["schema"]
        assert schema["properties"]["nickname"]["anyOf"][1] == {"type": "null"}


async def test_structured_step_without_outputs_is_a_clear_error(online):
    class NoOutputs(StructuredStep):
        class Inputs(BaseModel):
            prompt: str

    with pytest.raises(Exception, match="must define an Outputs"):
        await NoOutputs().execute({"prompt": "x"})
    assert online.chat_requests == []


async def test_structured_step_offline_gives_a_valid_instance(engine):
    result = await Summarize().execute({"prompt": "Summarize: cats sleep a lot and purr."}, model="offline")
    assert isinstance(result.output_content, Summary)
    assert result.output_content.key_points
    assert result.metadata["provider"] == "offline"
    assert result.metadata["cost_estimate"] == 0.0


def test_restore_output_rebuilds_the_outputs_instance():
    assert Summarize.restore_output(VALID) == Summary(**VALID)


@pytest.mark.slow
def test_flow_run_article_processing_through_the_server(fake_openai, tmp_path):
    """The built-in example from the CLI, in a subprocess, over litellm's HTTP path to the fake server."""
    fake_openai.script(
        Reply("Cats sleep sixteen hours a day.", usage=(40, 8)), Reply(json=VALID, usage=(60, 20))
    )
    result = run_flow_cli(
        fake_openai.base_url, tmp_path,
        "run", "article_processing", "--input", "article_text=Cats sleep.",
        "--model", "openai/gpt-4o-mini", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["status"] == "completed"
    assert report["outputs"]["summary"] == VALID
    assert report["outputs"]["metadata"]["total_tokens"] == 48 + 80
    extract, summarize = fake_openai.chat_requests
    assert "Cats sleep." in extract.text and extract.response_format_type is None
    assert summarize.response_format_type == "json_schema"
    assert "Cats sleep sixteen hours a day." in summarize.text
    assert "no model configured" not in result.stderr


async def test_a_server_rejecting_json_schema_with_http_500_gets_json_mode_at_once(online):
    """llama.cpp's answer to json_schema: HTTP 500 "Input should be 'text' or 'json_object'"."""
    online.reject_json_schema_500 = True
    online.script(Reply(json=VALID))
    result = await Summarize().execute({"prompt": "Summarize: cats sleep."})
    assert result.output_content == Summary(**VALID)
    assert result.metadata["structured_mode"] == "json"
    rejected, accepted = online.chat_requests  # one native attempt, not four
    assert rejected.response_format_type == "json_schema" and rejected.outcome == "500"
    assert accepted.response_format_type == "json_object"
    [fallback] = result.metadata["structured_fallbacks"]
    assert (fallback["from"], fallback["to"]) == ("native", "json")
    assert "Input should be 'text' or 'json_object'" in fallback["error"]
    failed, completed = get_engine().store.list_llm_requests()
    assert (failed.status, failed.http_status, completed.http_status) == ("failed", 500, 200)
    assert "Input should be 'text' or 'json_object'" in failed.error_message


async def test_a_native_rejection_then_a_failing_json_mode_quotes_the_servers_text(online):
    online.reject_json_schema_500 = True
    online.fail_next(400, message="json_object needs the word JSON in the prompt", times=1)
    online.fail_next(400, message="Input is too long for this model", times=1)
    with pytest.raises(LLMRequestError, match="Input is too long for this model"):
        await Summarize().execute({"prompt": "Summarize: cats sleep."})


async def test_forced_native_mode_quotes_the_servers_500_text(online):
    class Native(SummarizeLocal):
        structured_output = "native"

    online.reject_json_schema_500 = True
    with pytest.raises(LLMRequestError, match=r"HTTP 500: Input should be 'text' or 'json_object'"):
        await Native().execute({"prompt": "x"})


async def test_every_llm_step_sends_a_default_output_limit(online):
    online.script(Reply(json=VALID))
    await Summarize().execute({"prompt": "Summarize: cats sleep."})
    assert online.chat_requests[-1].body["max_tokens"] == get_engine().settings.max_output_tokens == 2048


async def test_the_steps_own_output_limit_and_llm_params_win(online):
    class Short(Summarize):
        max_output_tokens = 300

    class Explicit(Summarize):
        max_output_tokens = 300
        llm_params = {"max_tokens": 60}

    online.script(Reply(json=VALID), Reply(json=VALID))
    await Short().execute({"prompt": "a"})
    await Explicit().execute({"prompt": "b"})
    assert [r.body["max_tokens"] for r in online.chat_requests] == [300, 60]


async def test_the_output_limit_setting_and_zero_for_none(fake_openai, tmp_path):
    use_fake_openai(fake_openai.base_url, tmp_path, max_output_tokens=0)
    fake_openai.script(Reply(json=VALID))
    await Summarize().execute({"prompt": "a"})
    assert "max_tokens" not in fake_openai.chat_requests[-1].body
