"""The response cache through the fake OpenAI server: off by default; on per step, per run or by
setting; a hit sends no request and is recorded (cost 0, the original request's id)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel

from flow_engine import BaseFlow, StructuredStep, UnstructuredStep
from flow_engine.engine import get_engine
from flow_engine.errors import ConfigurationError
from flow_engine.llm.response_cache import cache_key
from flow_engine.storage import utcnow
from tests.fake_openai_server import Reply, use_fake_openai


@pytest.fixture
def online(fake_openai, tmp_path):
    use_fake_openai(fake_openai.base_url, tmp_path)
    return fake_openai


class Hello(UnstructuredStep):
    step_name = "hello"
    model = "openai/gpt-4o-mini"

    class Inputs(BaseModel):
        prompt: str


class CachedHello(Hello):
    step_name = "cached_hello"
    cache = True


class UncachedHello(Hello):
    step_name = "uncached_hello"
    cache = False


class HelloFlow(BaseFlow):
    flow_name = "hello_cache_flow"
    step: ClassVar[type[UnstructuredStep]] = Hello

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        result = await self.step().execute({"prompt": inputs.get("prompt", "Say hello")})
        return {"text": result.output_content}


def requests_of(run_id: Any) -> list[Any]:
    return get_engine().store.list_llm_requests(flow_run_id=run_id)


async def test_the_cache_is_off_by_default(online):
    online.script(Reply("one", usage=(5, 2)), Reply("two", usage=(5, 2)))
    first, second = HelloFlow(), HelloFlow()
    assert (await first.execute({}))["text"] == "one"
    assert (await second.execute({}))["text"] == "two"
    assert len(online.chat_requests) == 2
    assert get_engine().store.cache_stats() == []


async def test_a_run_with_cache_on_answers_a_repeated_call_without_a_request(online):
    online.script(Reply("cached answer", usage=(11, 7)))
    first, second = HelloFlow(), HelloFlow()
    assert (await first.execute({}, cache=True))["text"] == "cached answer"
    assert (await second.execute({}, cache=True))["text"] == "cached answer"
    assert len(online.chat_requests) == 1  # the second run asked nobody
    [paid] = requests_of(first.run_id)
    [hit] = requests_of(second.run_id)
    assert paid.cached_from is None and paid.cost and paid.cost > 0
    assert hit.cached_from == paid.id  # the hit names the request that paid
    assert hit.cost == 0.0 and hit.total_tokens == 0 and hit.status == "completed"
    assert hit.response["choices"][0]["message"]["content"] == "cached answer"
    run = get_engine().store.get_run(second.run_id)
    assert run.total_cost == 0.0 and run.total_tokens == 0
    [stats] = get_engine().store.cache_stats()
    assert (stats.model, stats.entries, stats.hits) == ("openai/gpt-4o-mini", 1, 1)
    assert stats.saved_cost == pytest.approx(paid.cost)


async def test_a_different_prompt_or_parameter_misses(online):
    online.script(Reply("a"), Reply("b"), Reply("c"))
    assert (await HelloFlow().execute({"prompt": "one"}, cache=True))["text"] == "a"
    assert (await HelloFlow().execute({"prompt": "two"}, cache=True))["text"] == "b"
    assert len(online.chat_requests) == 2
    base = cache_key("completion", "m", [{"role": "user", "content": "x"}], None, {"temperature": 0})
    assert base != cache_key("completion", "m", [{"role": "user", "content": "x"}], None, {"temperature": 1})
    assert base != cache_key("completion", "n", [{"role": "user", "content": "x"}], None, {"temperature": 0})
    # how the request travels is not what it asks: a key or a timeout changes nothing
    assert base == cache_key(
        "completion",
        "m",
        [{"role": "user", "content": "x"}],
        None,
        {"temperature": 0, "api_key": "k", "timeout": 3},
    )


async def test_the_output_schema_is_part_of_the_key():
    class A(BaseModel):
        x: int

    class B(BaseModel):
        y: str

    messages = [{"role": "user", "content": "x"}]
    assert cache_key("completion", "m", messages, None, {"response_format": A}) != cache_key(
        "completion", "m", messages, None, {"response_format": B}
    )


async def test_a_step_says_cache_on_or_off_whatever_the_run_says(online):
    online.script(Reply("x1"), Reply("x2"), Reply("x3"))

    class CachedFlow(HelloFlow):
        flow_name = "cached_step_flow"
        step = CachedHello

    class UncachedFlow(HelloFlow):
        flow_name = "uncached_step_flow"
        step = UncachedHello

    assert (await CachedFlow().execute({}))["text"] == "x1"
    assert (await CachedFlow().execute({}))["text"] == "x1"  # the step's cache = True
    assert (await UncachedFlow().execute({}, cache=True))["text"] == "x2"
    assert (await UncachedFlow().execute({}, cache=True))["text"] == "x3"  # cache = False wins
    assert len(online.chat_requests) == 3


async def test_the_setting_turns_it_on_and_a_run_can_turn_it_off(online):
    online.script(Reply("s1"), Reply("s2"))
    get_engine().settings.cache = True
    assert (await HelloFlow().execute({}))["text"] == "s1"
    assert (await HelloFlow().execute({}))["text"] == "s1"
    assert (await HelloFlow().execute({}, cache=False))["text"] == "s2"
    assert len(online.chat_requests) == 2


async def test_a_failed_call_is_never_cached(online):
    from tests.fake_openai_server import Fault

    get_engine().settings.max_retries = 0
    online.script(Fault.status(400), Reply("fine"))
    with pytest.raises(Exception, match="400"):
        await HelloFlow().execute({}, cache=True)
    assert get_engine().store.cache_stats() == []
    assert (await HelloFlow().execute({}, cache=True))["text"] == "fine"
    assert len(online.chat_requests) == 2


async def test_an_entry_past_its_ttl_is_asked_again(online, monkeypatch):
    from flow_engine.llm import response_cache

    online.script(Reply("old"), Reply("new"))
    get_engine().settings.cache_ttl = 60
    assert (await HelloFlow().execute({}, cache=True))["text"] == "old"
    assert (await HelloFlow().execute({}, cache=True))["text"] == "old"  # within its 60 s
    later = utcnow() + timedelta(seconds=61)
    monkeypatch.setattr(response_cache, "utcnow", lambda: later)
    assert (await HelloFlow().execute({}, cache=True))["text"] == "new"
    assert len(online.chat_requests) == 2


async def test_a_structured_step_is_answered_from_the_cache(online):
    class Person(BaseModel):
        name: str

    class Extract(StructuredStep):
        step_name = "extract_person"
        model = "openai/gpt-4o-mini"
        Outputs = Person
        cache = True

        class Inputs(BaseModel):
            prompt: str

    online.script(Reply('{"name": "Ada"}'))
    first = await Extract().execute({"prompt": "who?"})
    second = await Extract().execute({"prompt": "who?"})
    assert first.output_content == second.output_content == Person(name="Ada")
    assert len(online.chat_requests) == 1
    assert second.metadata["cost_estimate"] == 0.0


async def test_a_store_without_a_cache_is_refused_by_name(online, monkeypatch):
    store = get_engine().store
    monkeypatch.setattr(type(store), "has_cache", False)
    online.script(Reply("x"))
    with pytest.raises(ConfigurationError, match="keeps no cache"):
        await HelloFlow().execute({}, cache=True)


async def test_a_streamed_call_answered_from_the_cache_hands_its_listener_the_whole_text(online):
    from flow_engine.llm.streaming import listening

    online.script(Reply("streamed once"))
    assert (await HelloFlow().execute({}, cache=True))["text"] == "streamed once"
    pieces: list[str] = []
    with listening(pieces.append):
        assert (await HelloFlow().execute({}, cache=True))["text"] == "streamed once"
    assert pieces == ["streamed once"]
    assert len(online.chat_requests) == 1
