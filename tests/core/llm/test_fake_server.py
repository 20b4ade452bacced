"""The fake OpenAI server itself: the subprocess entry point and its HTTP control API."""

from __future__ import annotations

import httpx

from flow_engine.plugin import complete
from tests.fake_openai_server import Fault, RemoteFakeOpenAI, Reply, use_fake_openai


async def test_the_server_runs_as_a_subprocess_and_is_scripted_over_http(fake_openai_process, tmp_path):
    remote: RemoteFakeOpenAI = fake_openai_process
    assert remote.base_url.startswith("http://127.0.0.1:") and remote.base_url.endswith("/v1")
    use_fake_openai(remote.base_url, tmp_path)
    remote.script(Reply("scripted from afar", usage=(2, 3)))
    remote.fail_next(Fault.status(429, retry_after=0.01))
    call = await complete(
        [{"role": "user", "content": "hi"}], model="openai/gpt-4o-mini"
    )  # api_base: setting
    assert call.text == "scripted from afar" and call.total_tokens == 5
    requests = remote.chat_requests
    assert [r.outcome for r in requests] == ["429", "reply"]
    assert requests[0].body["messages"] == [{"role": "user", "content": "hi"}]
    assert requests[0].headers["Authorization"] == "Bearer test-key"
    assert remote.configure(latency_ms=5, reject_json_schema=True) == {
        "latency_ms": 5,
        "reject_json_schema": True,
    }
    remote.reset()
    assert remote.requests == []


def test_default_replies_and_request_log(fake_openai):
    response = httpx.post(
        f"{fake_openai.base_url}/chat/completions",
        json={"model": "m", "messages": [{"role": "user", "content": "ping"}]},
    )
    body = response.json()
    assert body["object"] == "chat.completion" and body["model"] == "m"
    assert body["choices"][0]["message"]["content"] == "fake answer to: ping"
    assert (
        body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    )
    image = httpx.post(f"{fake_openai.base_url}/images/generations", json={"prompt": "x", "n": 2}).json()
    assert len(image["data"]) == 2 and image["data"][0]["b64_json"]
    assert [r.path for r in fake_openai.requests] == ["/v1/chat/completions", "/v1/images/generations"]
    assert fake_openai.pending() == 0
