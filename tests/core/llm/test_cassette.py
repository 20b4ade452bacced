"""Record and replay through litellm's real HTTP path: responses recorded from the fake OpenAI server,
replayed with the server still listening and never asked (its request log stays empty)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from flow_engine import BaseFlow, ImageStep, StructuredOutputError, StructuredStep, UnstructuredStep
from flow_engine.engine import get_engine
from flow_engine.llm.cassette import Cassette, CassetteError, UnrecordedRequest, cassette
from flow_engine.plugin import complete
from flow_engine.testing import load_run
from tests.fake_openai_server import ImageReply, Reply, tiny_png, use_fake_openai

SUMMARY = {"title": "Rivers", "points": ["they rise", "they fall"]}
SECRET_KEY = "sk-cassette-secret-0123456789"


class Summary(BaseModel):
    title: str
    points: list[str]


class Extract(UnstructuredStep):
    step_name = "extract"
    model = "openai/gpt-4o-mini"
    llm_params = {"temperature": 0.2}

    class Inputs(BaseModel):
        prompt: str


class Summarize(StructuredStep):
    step_name = "summarize"
    model = "openai/gpt-4o-mini"
    Outputs = Summary

    class Inputs(BaseModel):
        prompt: str


class Article(BaseFlow):
    flow_name = "cassette_article"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        facts = (await Extract().execute({"prompt": f"Extract: {inputs['text']}"})).output_content
        summary = (await Summarize().execute({"prompt": f"Summarize: {facts}"})).output_content
        return {"facts": facts, "summary": summary.model_dump()}


@pytest.fixture
def tape_path(tmp_path: Path) -> Path:
    return tmp_path / "cassettes" / "article.json"


def recording_engine(fake_openai: Any, tmp_path: Path, **settings: Any) -> Any:
    return use_fake_openai(fake_openai.base_url, tmp_path, api_key=SECRET_KEY, **settings)


def replaying_engine(fake_openai: Any, tmp_path: Path) -> Any:
    """A fresh engine still pointed at the fake server, so a call that slipped through would show."""
    return use_fake_openai(fake_openai.base_url, tmp_path, api_key=SECRET_KEY)


async def record_article(fake_openai: Any, tmp_path: Path, tape_path: Path) -> dict[str, Any]:
    recording_engine(fake_openai, tmp_path)
    fake_openai.script(Reply("rivers rise and fall", usage=(12, 5)), Reply(json=SUMMARY, usage=(30, 9)))
    with cassette(tape_path, mode="record"):
        outputs = await Article().execute({"text": "a long article about rivers"})
    assert len(fake_openai.chat_requests) == 2
    fake_openai.reset()
    return outputs


async def test_a_recorded_run_replays_without_asking_the_server(fake_openai, tmp_path, tape_path):
    recorded = await record_article(fake_openai, tmp_path, tape_path)
    recorded_rows = get_engine().store.list_llm_requests()
    assert all(r.cost and r.cost > 0 for r in recorded_rows)  # real, priced calls

    replaying_engine(fake_openai, tmp_path)
    flow = Article()
    with cassette(tape_path) as tape:  # mode="replay" is the default
        replayed = await flow.execute({"text": "a long article about rivers"})
    assert replayed == recorded
    assert fake_openai.requests == []  # the server was up and never asked
    assert tape.unplayed == []
    run = load_run(flow)
    assert run.status == "completed"
    assert [(r.status, r.cost, r.request_params["replayed_from"]) for r in run.llm_requests] == [
        ("completed", 0.0, "article.json"),
        ("completed", 0.0, "article.json"),
    ]
    # tokens are the recorded ones; the structured answer was validated again
    assert [r.total_tokens for r in run.llm_requests] == [r.total_tokens for r in recorded_rows] == [17, 39]
    assert run.step("summarize").step_metadata["structured_mode"] == "native"


async def test_the_cassette_file_is_readable_json_without_secrets(fake_openai, tmp_path, tape_path):
    recording_engine(fake_openai, tmp_path)
    fake_openai.script(Reply("ok"))
    with cassette(tape_path, mode="record"):
        await complete(
            [{"role": "user", "content": "hello"}],
            model="openai/gpt-4o-mini",
            api_key=SECRET_KEY,
            extra_headers={"Authorization": f"Bearer {SECRET_KEY}", "X-Trace": "t1"},
            temperature=0,
        )
    assert fake_openai.chat_requests[0].headers["Authorization"] == f"Bearer {SECRET_KEY}"  # it was used
    text = tape_path.read_text()
    assert SECRET_KEY not in text
    assert "Authorization" not in text and "Bearer" not in text and "X-Trace" not in text
    data = json.loads(text)
    [item] = data["interactions"]
    assert item["kind"] == "completion" and item["model"] == "openai/gpt-4o-mini"
    assert item["messages"] == [{"role": "user", "content": "hello"}]
    assert item["params"] == {"temperature": 0}
    assert item["response"]["choices"][0]["message"]["content"] == "ok"


async def test_an_unrecorded_request_fails_naming_model_step_and_prompt(fake_openai, tmp_path, tape_path):
    await record_article(fake_openai, tmp_path, tape_path)
    replaying_engine(fake_openai, tmp_path)
    flow = Article()
    with cassette(tape_path), pytest.raises(UnrecordedRequest) as caught:
        await flow.execute({"text": "a different article about lakes"})
    message = str(caught.value)
    assert message.startswith(
        "cassette 'article.json' has no recorded response for completion with model 'openai/gpt-4o-mini' "
        "(step 'extract'), prompt 'Extract: a different article about lakes'"
    )
    assert "2 recorded request(s), 2 of them completion with this model" in message
    assert (
        "the closest recording's prompt differs here: 'user: Extract: a different article about lakes' "
        "(recorded: 'user: Extract: a long article about rivers')"
    ) in message
    assert fake_openai.requests == []
    run = load_run(flow)
    assert run.status == "failed" and run.step("extract").status == "failed"
    [row] = run.llm_requests
    assert row.status == "failed" and "UnrecordedRequest" in row.error_message


async def test_a_changed_parameter_is_a_different_request(fake_openai, tmp_path, tape_path):
    await record_article(fake_openai, tmp_path, tape_path)
    replaying_engine(fake_openai, tmp_path)
    Extract.llm_params = {"temperature": 0.9}
    try:
        match = r"step 'extract'.*the same prompt but other parameters \(temperature\)"
        with cassette(tape_path), pytest.raises(UnrecordedRequest, match=match):
            await Article().execute({"text": "a long article about rivers"})
    finally:
        Extract.llm_params = {"temperature": 0.2}


async def test_identical_requests_are_answered_in_recorded_order(fake_openai, tmp_path, tape_path):
    recording_engine(fake_openai, tmp_path)
    fake_openai.script(Reply("one"), Reply("two"))
    messages = [{"role": "user", "content": "a joke, please"}]
    with cassette(tape_path, mode="record"):
        first = await complete(messages, model="openai/gpt-4o-mini")
        second = await complete(messages, model="openai/gpt-4o-mini")
    assert (first.text, second.text) == ("one", "two")
    fake_openai.reset()
    replaying_engine(fake_openai, tmp_path)
    with cassette(tape_path):
        assert (await complete(messages, model="openai/gpt-4o-mini")).text == "one"
        assert (await complete(messages, model="openai/gpt-4o-mini")).text == "two"
        with pytest.raises(UnrecordedRequest, match="recorded 2 time\\(s\\) and every recording"):
            await complete(messages, model="openai/gpt-4o-mini")
    assert fake_openai.requests == []


async def test_a_schema_rejection_is_replayed_so_the_fallback_finds_its_answer(
    fake_openai, tmp_path, tape_path
):
    recording_engine(fake_openai, tmp_path)
    fake_openai.reject_json_schema = True
    fake_openai.script(Reply(json=SUMMARY))
    with cassette(tape_path, mode="record"):
        recorded = await Summarize().execute({"prompt": "Summarize: rivers"})
    assert recorded.metadata["structured_mode"] == "json"
    assert [r.outcome for r in fake_openai.chat_requests] == ["400", "reply"]
    fake_openai.reset()

    replaying_engine(fake_openai, tmp_path)  # a fresh engine: it has not learnt about the rejection
    with cassette(tape_path):
        replayed = await Summarize().execute({"prompt": "Summarize: rivers"})
    assert replayed.output_content == recorded.output_content
    assert replayed.metadata["structured_mode"] == "json"
    assert fake_openai.requests == []
    rejected, answered = get_engine().store.list_llm_requests()
    assert rejected.status == "failed" and "HTTP 400" in rejected.error_message
    assert answered.status == "completed"


class Picture(ImageStep):
    step_name = "picture"
    model = "openai/dall-e-3"

    class Inputs(BaseModel):
        prompt: str


def _read(path: str) -> bytes:
    return Path(path).read_bytes()


async def test_images_are_recorded_and_replayed(fake_openai, tmp_path, tape_path):
    recording_engine(fake_openai, tmp_path)
    png = tiny_png(6, 2)
    fake_openai.script(ImageReply(b64=True, png=png, revised_prompt="a calm river"))
    with cassette(tape_path, mode="record"):
        await Picture().execute({"prompt": "a river"})
    fake_openai.reset()
    replaying_engine(fake_openai, tmp_path)
    with cassette(tape_path):
        result = await Picture().execute({"prompt": "a river"})
    image = result.output_content["images"][0]
    assert _read(image["path"]) == png
    assert image["revised_prompt"] == "a calm river"
    assert fake_openai.requests == []


async def test_recording_keeps_what_was_recorded_when_the_run_fails(fake_openai, tmp_path, tape_path):
    recording_engine(fake_openai, tmp_path)  # structured_max_reasks is 2: three invalid answers fail
    fake_openai.script(
        Reply("rivers rise and fall"), Reply("not json"), Reply("still not"), Reply("nor this")
    )
    with pytest.raises(StructuredOutputError), cassette(tape_path, mode="record"):
        await Article().execute({"text": "rivers"})
    data = json.loads(tape_path.read_text())
    assert [i["step"] for i in data["interactions"]] == ["extract", "summarize", "summarize", "summarize"]


class ExtractThroughGateway(Extract):
    llm_params = {"temperature": 0.2, "extra_headers": {"X-Gateway-Code": "8675309"}}


async def test_a_secret_that_spells_a_number_in_the_file_leaves_it_json_and_replayable(
    fake_openai, tmp_path, tape_path
):
    """A header value is a secret; where the same digits are a token count the number stays, where
    they are text they are blanked: the file is still JSON and replays."""
    recording_engine(fake_openai, tmp_path)
    fake_openai.script(Reply("the answer", usage=(8675309, 5)))
    with cassette(tape_path, mode="record"):
        await ExtractThroughGateway().execute({"prompt": "code 8675309 please"})
    sent = {name.lower(): value for name, value in fake_openai.chat_requests[0].headers.items()}
    assert sent["x-gateway-code"] == "8675309"  # it was sent
    data = json.loads(tape_path.read_text())  # still JSON
    [item] = data["interactions"]
    assert item["messages"] == [{"role": "user", "content": "code *** please"}]
    assert item["response"]["usage"]["prompt_tokens"] == 8675309
    fake_openai.reset()
    replaying_engine(fake_openai, tmp_path)
    with cassette(tape_path):
        replayed = await ExtractThroughGateway().execute({"prompt": "code 8675309 please"})
    assert replayed.output_content == "the answer" and fake_openai.requests == []


def test_cassette_file_problems_are_usage_errors(tmp_path):
    with pytest.raises(CassetteError, match=r"no cassette '.*missing\.json' to replay; record it first"):
        Cassette(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(CassetteError, match="is not valid JSON"):
        Cassette(broken)
    other = tmp_path / "other.json"
    other.write_text('{"some": "json"}')
    with pytest.raises(CassetteError, match="is not a flow-engine cassette"):
        Cassette(other)
    with pytest.raises(Exception, match="mode must be 'record' or 'replay'"):
        Cassette(other, mode="rewind")  # type: ignore[arg-type]


async def test_no_cassette_means_the_normal_path(fake_openai, tmp_path):
    recording_engine(fake_openai, tmp_path)
    fake_openai.script(Reply("live"))
    call = await complete([{"role": "user", "content": "hi"}], model="openai/gpt-4o-mini")
    assert call.text == "live" and len(fake_openai.chat_requests) == 1
    [row] = get_engine().store.list_llm_requests()
    assert "replayed_from" not in (row.request_params or {})
