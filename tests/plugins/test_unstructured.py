"""UnstructuredStep: a prompt in, text out — through the fake OpenAI server and offline."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from flow_engine import BaseFlow, UnstructuredStep
from flow_engine.engine import get_engine
from flow_engine.errors import PromptError, UsageError
from tests.fake_openai_server import Reply, use_fake_openai

pytestmark = pytest.mark.usefixtures("no_network")  # 127.0.0.1 only


class Greet(UnstructuredStep):
    step_name = "greet"
    model = "openai/gpt-4o-mini"
    system_prompt = "You are friendly."
    llm_params = {"temperature": 0.1, "max_tokens": 50}

    class Inputs(BaseModel):
        prompt: str


@pytest.fixture
def online(fake_openai, tmp_path):
    use_fake_openai(fake_openai.base_url, tmp_path)
    return fake_openai


async def test_text_generation_through_the_server(online):
    online.script(Reply("Hello, Ada!", usage=(20, 4)))
    result = await Greet().execute({"prompt": "Greet Ada"})
    assert result.step_name == "greet"
    assert result.output_content == "Hello, Ada!"
    meta = result.metadata
    assert meta["tokens_used"] == 24
    assert meta["provider"] == "openai" and meta["model"] == "openai/gpt-4o-mini"
    assert meta["cost_estimate"] > 0
    assert meta["execution_time_ms"] >= 0
    [sent] = online.chat_requests
    assert sent.messages == [
        {"role": "system", "content": "You are friendly."},
        {"role": "user", "content": "Greet Ada"},
    ]
    assert sent.body["temperature"] == 0.1 and sent.body["max_tokens"] == 50
    assert "response_format" not in sent.body


async def test_prompt_file_is_rendered_with_the_inputs(online, tmp_path):
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "greet.md").write_text("Greet {{ name }} in {{ language }}.")

    class GreetByFile(UnstructuredStep):
        model = "openai/gpt-4o-mini"
        prompt_file = "greet.md"

        class Inputs(BaseModel):
            name: str
            language: str = "French"

    online.script(Reply("Bonjour Ada"))
    result = await GreetByFile().execute({"name": "Ada"})
    assert result.output_content == "Bonjour Ada"
    assert online.chat_requests[0].messages == [{"role": "user", "content": "Greet Ada in French."}]


async def test_api_base_of_the_step_wins_over_the_setting(fake_openai, tmp_path, refused_base_url):
    use_fake_openai(refused_base_url, tmp_path, max_retries=0)

    class Pointed(Greet):
        api_base = fake_openai.base_url

    fake_openai.script(Reply("reached"))
    assert (await Pointed().execute({"prompt": "hi"})).output_content == "reached"


async def test_a_step_without_prompt_file_or_prompt_input_is_a_usage_error(engine):
    class NoPrompt(UnstructuredStep):
        class Inputs(BaseModel):
            text: str

    with pytest.raises(UsageError, match="no prompt_file and no 'prompt' input"):
        await NoPrompt().execute({"text": "x"})


async def test_a_missing_prompt_file_fails_the_step_in_its_run(engine):
    class Missing(UnstructuredStep):
        prompt_file = "nowhere.md"

    class Flow(BaseFlow):
        async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
            await Missing().execute({})
            return {}

    flow = Flow()
    with pytest.raises(PromptError):
        await flow.execute({})
    [step] = get_engine().store.list_steps(flow.run_id)
    assert step.status == "failed" and "nowhere.md" in step.error_message


async def test_offline_text_is_derived_from_the_prompt(engine):
    result = await Greet().execute({"prompt": "Tell me about lighthouses"}, model="offline")
    assert "lighthouses" in result.output_content
    assert result.metadata["provider"] == "offline"
