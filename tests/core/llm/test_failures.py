"""Failed attempts told by what happened (refused, DNS, timeout, real HTTP status, empty answer), through
litellm's real HTTP path to the fake OpenAI server; the HTTP status stored in its own column."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

import pytest
from pydantic import BaseModel

from flow_engine import BaseFlow, UnstructuredStep
from flow_engine.engine import get_engine
from flow_engine.llm.calls import LLMRequestError
from flow_engine.llm.failures import classify
from flow_engine.llm.retry_policy import is_transient
from flow_engine.plugin import complete
from tests.fake_openai_server import Fault, Reply, use_fake_openai

MESSAGES = [{"role": "user", "content": "Say hello"}]
MODEL = "openai/gpt-4o-mini"


def records() -> list[Any]:
    return get_engine().store.list_llm_requests()


async def test_connection_refused_says_so_and_names_the_url_not_http_500(tmp_path, refused_base_url):
    use_fake_openai(refused_base_url, tmp_path)
    with pytest.raises(LLMRequestError) as info:
        await complete(MESSAGES, model=MODEL, api_base=refused_base_url)
    message = str(info.value)
    assert f"connection refused at {refused_base_url}" in message
    without_url = message.replace(refused_base_url, "")  # its random port may hold "500"
    assert "500" not in without_url and "InternalServerError" not in message
    assert info.value.kind == "refused" and info.value.status_code is None
    assert all(r.http_status is None for r in records())
    assert all("connection refused" in r.error_message for r in records())


async def test_an_unknown_host_is_a_dns_failure_not_http_500(tmp_path):
    base = "http://no-such-host.invalid/v1"  # the no_network fixture fails its name lookup
    use_fake_openai(base, tmp_path, max_retries=0)
    with pytest.raises(LLMRequestError) as info:
        await complete(MESSAGES, model=MODEL, api_base=base)
    message = str(info.value)
    assert "cannot resolve the host 'no-such-host.invalid' (DNS failure)" in message
    assert "500" not in message and info.value.kind == "dns"


async def test_a_timeout_says_no_answer_within_n_s_and_points_at_the_output_limit(fake_openai, tmp_path):
    use_fake_openai(fake_openai.base_url, tmp_path, request_timeout=0.3, max_retries=3)
    fake_openai.fail_next(Fault.hang(10), times=5)
    started = time.perf_counter()
    with pytest.raises(LLMRequestError) as info:
        await complete(MESSAGES, model=MODEL, api_base=fake_openai.base_url)
    message = str(info.value)
    assert "no answer within 0.3 s" in message
    # not reported as an HTTP 408 (the server's random port may hold "408": left out of the check)
    port = f":{urlsplit(fake_openai.base_url).port}"
    assert port in message
    assert "408" not in message.replace(port, "") and "provider may be down" not in message
    assert "FLOW_ENGINE_MAX_OUTPUT_TOKENS" in message and "--max-output-tokens" in message
    # a timeout is retried once (FLOW_ENGINE_TIMEOUT_RETRIES), not max_retries=3 times like a 429
    assert info.value.attempts == 2 and len(fake_openai.chat_requests) == 2
    assert "gave up after 2 attempt(s) in " in message
    spent = float(message.split("attempt(s) in ")[1].split("s")[0])
    assert 0.5 <= spent <= time.perf_counter() - started + 0.1
    assert [r.http_status for r in records()] == [None, None]


async def test_a_rate_limit_is_still_retried_max_retries_times(fake_openai, tmp_path):
    use_fake_openai(fake_openai.base_url, tmp_path, max_retries=3)
    fake_openai.fail_next(429, times=3).script(Reply("finally"))
    call = await complete(MESSAGES, model=MODEL, api_base=fake_openai.base_url)
    assert call.attempts == 4
    assert [r.http_status for r in records()] == [429, 429, 429, 200]


async def test_timeout_retries_setting_allows_more(fake_openai, tmp_path):
    use_fake_openai(fake_openai.base_url, tmp_path, request_timeout=0.3, max_retries=3, timeout_retries=2)
    fake_openai.fail_next(Fault.hang(10), times=2).script(Reply("third time"))
    call = await complete(MESSAGES, model=MODEL, api_base=fake_openai.base_url)
    assert call.attempts == 3


@pytest.mark.slow
async def test_the_request_timeout_bounds_a_dripping_answer(fake_openai, tmp_path):
    """Each byte arrives well within the timeout, the whole answer would take minutes."""
    use_fake_openai(fake_openai.base_url, tmp_path, request_timeout=1.5, max_retries=0)
    fake_openai.fail_next(Fault.drip(0.5))
    started = time.perf_counter()
    with pytest.raises(LLMRequestError) as info:
        await complete(MESSAGES, model=MODEL, api_base=fake_openai.base_url)
    assert time.perf_counter() - started < 10
    assert "no answer within 1.5 s" in str(info.value)
    [record] = records()
    assert record.status == "failed" and record.http_status is None


@pytest.mark.parametrize("shape", ["null", "none"], ids=["content null", "no choices"])
async def test_an_http_200_without_an_answer_is_a_failed_attempt_and_retried(fake_openai, tmp_path, shape):
    use_fake_openai(fake_openai.base_url, tmp_path)
    fake_openai.fail_next(Fault.empty(shape)).script(Reply("a real answer"))
    call = await complete(MESSAGES, model=MODEL, api_base=fake_openai.base_url)
    assert call.text == "a real answer" and call.attempts == 2
    first, second = records()
    assert first.status == "failed" and "HTTP 200 with no" in first.error_message
    assert second.status == "completed"


class Hello(UnstructuredStep):
    step_name = "hello"
    model = MODEL

    class Inputs(BaseModel):
        prompt: str


class HelloFlow(BaseFlow):
    flow_name = "hello_flow_empty"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"text": (await Hello().execute({"prompt": "hi"})).output_content}


async def test_a_step_whose_answers_stay_empty_fails_never_completes_with_empty_text(fake_openai, tmp_path):
    use_fake_openai(fake_openai.base_url, tmp_path)
    fake_openai.fail_next(Fault.empty(), times=5)
    flow = HelloFlow()
    with pytest.raises(LLMRequestError, match=r"no content \(content: null\).*gave up after 3 attempt"):
        await flow.execute({})
    [step] = get_engine().store.list_steps(flow.run_id)
    assert step.status == "failed"
    assert get_engine().store.get_run(flow.run_id).status == "failed"


@pytest.mark.parametrize("database", ["memory", "sqlite"])
async def test_the_http_status_of_each_attempt_is_stored_in_its_own_column(fake_openai, tmp_path, database):
    url = "memory://" if database == "memory" else f"sqlite:///{tmp_path / 'runs.db'}"
    use_fake_openai(fake_openai.base_url, tmp_path, database_url=url)
    fake_openai.fail_next(503).script(Reply("ok"))
    await complete(MESSAGES, model=MODEL, api_base=fake_openai.base_url)
    assert [(r.status, r.http_status) for r in records()] == [("failed", 503), ("completed", 200)]


async def test_a_server_error_quotes_the_servers_own_text(fake_openai, tmp_path):
    use_fake_openai(fake_openai.base_url, tmp_path, max_retries=0)
    fake_openai.fail_next(500, message="model 'x' is loading, try later")
    with pytest.raises(LLMRequestError, match=r"HTTP 500: model 'x' is loading, try later"):
        await complete(MESSAGES, model=MODEL, api_base=fake_openai.base_url)


@pytest.mark.parametrize(
    ("name", "status", "text"),
    [
        ("InternalServerError", 500, "OpenAIException - Missing credentials. Please pass an `api_key`"),
        ("APIConnectionError", 500, "Missing Gemini API key. Set the GEMINI_API_KEY environment variable."),
        ("AuthenticationError", 401, "Missing Anthropic API Key - no key is set either in the environment"),
    ],
)
def test_a_missing_api_key_is_its_own_kind_and_never_transient(name: str, status: int, text: str) -> None:
    exc = type(name, (Exception,), {"status_code": status})(f"litellm.{name}: {text}")
    failure = classify(exc, "https://api.example", 5)
    assert failure.kind == "credentials" and failure.http_status is None
    assert text.split(" - ")[-1][:20] in failure.text
    assert not is_transient(exc)


def test_a_real_server_error_stays_transient() -> None:
    exc = type("InternalServerError", (Exception,), {"status_code": 500})("upstream overloaded, key rotation")
    assert classify(exc, None, 5).kind != "credentials" and is_transient(exc)
