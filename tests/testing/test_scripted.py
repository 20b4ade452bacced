"""The ``scripted`` fixture from inside our own suite: answers per step and in order, structured objects,
re-asks, pinned models, images, failures, and what the prompts and ``llm_requests`` rows say."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from flow_engine import BaseFlow, ImageStep, StructuredOutputError, StructuredStep, UnstructuredStep
from flow_engine.llm import LLMRequestError
from flow_engine.plugin import complete
from flow_engine.testing import ScriptedAnswerMissing, load_run
from tests.fake_openai_server import tiny_png


class Summary(BaseModel):
    title: str
    points: list[str]


class Extract(UnstructuredStep):
    step_name = "extract"
    system_prompt = "You extract facts."

    class Inputs(BaseModel):
        prompt: str


class Summarize(StructuredStep):
    step_name = "summarize"
    Outputs = Summary
    max_reasks = 1

    class Inputs(BaseModel):
        prompt: str


class PinnedModel(UnstructuredStep):
    """A step whose class pins a real provider's model: the script must answer it, not the network."""

    step_name = "pinned"
    model = "openai/gpt-4o-mini"
    llm_params = {"temperature": 0.3}

    class Inputs(BaseModel):
        prompt: str


class Article(BaseFlow):
    flow_name = "scripted_article"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        facts = (await Extract().execute({"prompt": f"Extract from: {inputs['text']}"})).output_content
        summary = (await Summarize().execute({"prompt": f"Summarize: {facts}"})).output_content
        return {"facts": facts, "title": summary.title, "points": summary.points}


async def test_answers_per_step_reach_the_flow_and_its_records(scripted):
    scripted.respond("extract", "rivers flood in spring")
    scripted.respond("summarize", Summary(title="Spring floods", points=["rivers", "spring"]))
    flow = Article()
    outputs = await flow.execute({"text": "a long article"})
    assert outputs == {
        "facts": "rivers flood in spring",
        "title": "Spring floods",
        "points": ["rivers", "spring"],
    }
    # the second step's prompt carries the first step's scripted answer
    [request] = scripted.expect("summarize", contains="rivers flood in spring", count=1)
    assert request.user_prompt == "Summarize: rivers flood in spring"
    assert request.schema is not None and set(request.schema["properties"]) == {"title", "points"}
    [extract] = scripted.requests_for("extract")
    assert extract.system_prompt == "You extract facts."
    assert scripted.prompts_for("extract") == ["You extract facts.\n\nExtract from: a long article"]
    run = load_run(flow)
    assert run.status == "completed"
    assert run.output("summarize") == {"title": "Spring floods", "points": ["rivers", "spring"]}
    [row] = run.requests_for("summarize")
    assert (row.provider, row.status, row.cost) == ("scripted", "completed", 0.0)
    assert (
        row.response["choices"][0]["message"]["content"]
        == '{"title":"Spring floods","points":["rivers","spring"]}'
    )
    scripted.assert_all_used()


async def test_shared_queue_answers_in_order_after_step_answers(scripted):
    scripted.queue("first shared", {"title": "From a dict", "points": []})
    outputs = await Article().execute({"text": "x"})
    assert outputs["facts"] == "first shared"
    assert outputs["title"] == "From a dict"
    assert scripted.pending() == {}


async def test_steps_pinning_a_real_model_are_answered_from_the_script(scripted, no_network):
    scripted.respond("pinned", "no network needed")
    result = await PinnedModel().execute({"prompt": "hello"})
    assert result.output_content == "no network needed"
    [request] = scripted.requests
    assert request.model == "openai/gpt-4o-mini"  # what the step asked for
    assert request.params == {"temperature": 0.3, "max_tokens": 2048}  # the default output limit
    [row] = await _rows()
    assert row.model == "scripted/openai/gpt-4o-mini"  # what the row says really answered


async def _rows() -> list[Any]:
    from flow_engine.engine import get_engine

    return get_engine().store.list_llm_requests()


async def test_an_engine_configured_during_the_test_is_answered_too(scripted, tmp_path):
    from flow_engine import configure

    configure(database_url="memory://", data_dir=tmp_path / "other")
    scripted.respond("extract", "still scripted")
    assert (await Extract().execute({"prompt": "x"})).output_content == "still scripted"


async def test_an_invalid_structured_answer_is_re_asked_with_the_errors(scripted):
    scripted.respond("summarize", {"title": "no points"}, Summary(title="Fixed", points=["p"]))
    result = await Summarize().execute({"prompt": "Summarize: x"})
    assert result.output_content == Summary(title="Fixed", points=["p"])
    _first, second = scripted.requests_for("summarize")
    assert "points" in second.user_prompt and "did not validate" in second.user_prompt


async def test_invalid_answers_beyond_the_re_asks_fail_the_step(scripted):
    scripted.respond("summarize", "not json", "still not json")
    with pytest.raises(StructuredOutputError, match="gave no valid Summary in 2 answer"):
        await Summarize().execute({"prompt": "Summarize: x"})


async def test_a_step_without_an_answer_fails_naming_it_and_its_prompt(scripted):
    scripted.respond("extract", "facts")
    flow = Article()
    with pytest.raises(ScriptedAnswerMissing) as caught:
        await flow.execute({"text": "the article"})
    message = str(caught.value)
    assert "no scripted answer for step 'summarize'" in message
    assert "'Summarize: facts'" in message
    assert "scripted.respond('summarize', ...)" in message
    assert "1 answer(s) were used before" in message
    run = load_run(flow)
    assert run.status == "failed" and run.step("summarize").status == "failed"
    assert "ScriptedAnswerMissing" in run.run.error_message


async def test_a_queued_exception_fails_the_call_like_a_provider_error(scripted):
    scripted.respond("extract", ValueError("the provider said no"))
    with pytest.raises(LLMRequestError, match="the provider said no"):
        await Extract().execute({"prompt": "x"})
    [request] = scripted.requests  # an in-process provider's own error is not retried
    assert request.answer is None and request.error == "ValueError: the provider said no"


async def test_a_callable_answer_sees_the_request(scripted):
    scripted.respond("extract", lambda request: request.user_prompt.upper())
    result = await Extract().execute({"prompt": "shout this"})
    assert result.output_content == "SHOUT THIS"


async def test_calls_outside_any_step_use_the_shared_queue(scripted):
    scripted.queue("direct")
    call = await complete([{"role": "user", "content": "hi"}], model="anthropic/claude-3-5-haiku")
    assert call.text == "direct"
    [request] = scripted.requests
    assert request.step is None and request.model == "anthropic/claude-3-5-haiku"


class Illustrate(ImageStep):
    step_name = "illustrate"

    class Inputs(BaseModel):
        prompt: str


def _read(path: str) -> bytes:
    return Path(path).read_bytes()


async def test_image_steps_get_the_scripted_image_bytes(scripted):
    png = tiny_png(5, 4)
    scripted.respond("illustrate", png)
    result = await Illustrate().execute({"prompt": "a red square"})
    image = result.output_content["images"][0]
    assert (image["width"], image["height"]) == (5, 4)
    assert _read(image["path"]) == png
    assert scripted.requests[0].kind == "image_generation"
    assert scripted.requests[0].prompt == "a red square"


async def test_an_image_step_scripted_with_text_is_a_clear_error(scripted):
    scripted.respond("illustrate", "not an image")
    with pytest.raises(Exception, match="generates images: script it with image bytes"):
        await Illustrate().execute({"prompt": "a red square"})


# -- the assertions' messages ------------------------------------------------------------------------
async def test_expect_failure_shows_the_prompts_the_step_sent(scripted):
    scripted.queue("facts", Summary(title="t", points=[]))
    await Article().execute({"text": "about rivers"})
    with pytest.raises(AssertionError) as caught:
        scripted.expect("extract", contains="about lakes")
    message = str(caught.value)
    assert message.startswith(
        "scripted.expect('extract', contains='about lakes'): no prompt of step 'extract'"
    )
    assert "system: You extract facts." in message
    assert "user: Extract from: about rivers" in message


async def test_expect_names_the_steps_that_did_send_when_one_did_not(scripted):
    scripted.queue("facts", Summary(title="t", points=[]))
    await Article().execute({"text": "x"})
    with pytest.raises(AssertionError, match=r"step 'summarise' sent no request\nsteps that sent requests: "):
        scripted.expect("summarise")
    with pytest.raises(AssertionError, match="step 'extract' sent 1 request\\(s\\), not 2"):
        scripted.expect("extract", count=2)
    assert len(scripted.expect("extract", matches=r"Extract from: \w")) == 1


def test_assert_all_used_lists_what_is_left(scripted):
    scripted.respond("extract", "a", "b").queue("c")
    with pytest.raises(AssertionError, match=r"never used — 'extract': 2, shared queue: 1"):
        scripted.assert_all_used()


def test_answers_of_an_unsupported_type_are_refused(scripted):
    from flow_engine.testing.scripted_model import answer_text

    with pytest.raises(Exception, match="must be text, a pydantic object"):
        answer_text(object())
    assert answer_text({"a": 1}) == '{"a": 1}'


async def test_without_the_fixture_nothing_is_routed(engine):
    """The routing ends with the fixture: a later test's steps reach their own models again."""
    assert engine.plugins.pm.hook.wrap_llm_call.get_hookimpls() == []
    result = await Extract().execute({"prompt": "offline please"})
    [row] = engine.store.list_llm_requests()
    assert row.provider == "offline" and result.output_content
