"""The ``wrap_llm_call`` hook: plugins observe, replace or route each attempt of each LLM call."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest
from pydantic import BaseModel

from flow_engine import BaseFlow, UnstructuredStep, configure
from flow_engine.engine import get_engine
from flow_engine.llm.calls import LLMRequestError
from flow_engine.llm.hook import LLMCallInfo, Send, call_listeners, call_plugins
from flow_engine.llm.loader import load_litellm
from flow_engine.plugin import complete, hookimpl

MESSAGES = [{"role": "user", "content": "Say hello"}]


class Observer:
    """Sees every attempt and its response (what a tracer does)."""

    def __init__(self) -> None:
        self.seen: list[tuple[LLMCallInfo, Any]] = []

    @hookimpl(wrapper=True)
    def wrap_llm_call(self, call: LLMCallInfo) -> Generator[None, Send, Send]:
        send = yield

        async def observed() -> Any:
            response = await send()
            self.seen.append((call, response))
            return response

        return observed


def _answer(text: str) -> Any:
    return load_litellm().ModelResponse(
        choices=[{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
        usage={"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    )


class Greet(UnstructuredStep):
    step_name = "greet"

    class Inputs(BaseModel):
        prompt: str


class GreetFlow(BaseFlow):
    flow_name = "greet_flow"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"text": (await Greet().execute({"prompt": "Say hi"})).output_content}


async def test_an_observer_sees_each_call_with_its_step_and_the_real_response(engine):
    observer = Observer()
    engine.plugins.register(observer, name="observer")
    flow = GreetFlow()
    outputs = await flow.execute({})
    [(call, response)] = observer.seen
    assert call.kind == "completion" and call.model == "offline/default"
    assert call.messages == [{"role": "user", "content": "Say hi"}] and call.prompt is None
    assert call.step == "greet" and call.run_id == flow.run_id and call.attempt == 1
    assert response.choices[0].message.content == outputs["text"]  # passed through unchanged
    [row] = engine.store.list_llm_requests()
    assert row.call_id == call.call_id and row.step_run_id == call.step_id


async def test_a_wrapper_can_answer_without_calling_the_model(engine):
    class Replay:
        @hookimpl(wrapper=True)
        def wrap_llm_call(self, call: LLMCallInfo) -> Generator[None, Send, Send]:
            yield  # the model's own send is never awaited

            async def recorded() -> Any:
                call.replayed_from = "tape.json"
                return _answer(f"recorded answer to {call.messages[-1]['content']}")

            return recorded

    engine.plugins.register(Replay(), name="replay")
    result = await complete(MESSAGES, model="openai/gpt-4o", temperature=0.2)
    assert result.text == "recorded answer to Say hello" and result.total_tokens == 5
    [row] = engine.store.list_llm_requests()
    assert row.model == "openai/gpt-4o" and row.cost == 0.0
    assert row.request_params == {"temperature": 0.2, "replayed_from": "tape.json"}


async def test_every_retry_goes_through_the_hook_with_its_attempt_number(engine):
    attempts: list[int] = []

    class FlakyOnce:
        @hookimpl(wrapper=True)
        def wrap_llm_call(self, call: LLMCallInfo) -> Generator[None, Send, Send]:
            send = yield
            attempts.append(call.attempt)

            async def flaky() -> Any:
                if call.attempt == 1:
                    raise TimeoutError("the first attempt times out")
                return await send()

            return flaky

    engine.plugins.register(FlakyOnce(), name="flaky")
    result = await complete(MESSAGES, model="offline/default")
    assert attempts == [1, 2] and result.attempts == 2
    rows = sorted(engine.store.list_llm_requests(), key=lambda r: r.attempt)
    assert [(r.attempt, r.status) for r in rows] == [(1, "failed"), (2, "completed")]
    assert "the first attempt times out" in rows[0].error_message


async def test_a_wrapper_that_fails_for_good_fails_the_call(engine):
    class Refuse:
        @hookimpl(wrapper=True)
        def wrap_llm_call(self, call: LLMCallInfo) -> Generator[None, Send, Send]:
            yield

            async def refuse() -> Any:
                raise ValueError("blocked by policy")

            return refuse

    engine.plugins.register(Refuse(), name="refuse")
    with pytest.raises(LLMRequestError, match="blocked by policy") as info:
        await complete(MESSAGES, model="offline/default")
    assert info.value.attempts == 1  # not transient: not retried


async def test_a_wrapper_can_route_the_call_to_another_model(engine):
    class Route:
        @hookimpl(wrapper=True)
        def wrap_llm_call(self, call: LLMCallInfo) -> Generator[None, Send, Send]:
            call.model = "offline/routed"
            return (yield)

    engine.plugins.register(Route(), name="route")
    result = await complete(MESSAGES, model="openai/gpt-4o")
    [row] = engine.store.list_llm_requests()
    assert result.model == row.model == "offline/routed" and row.provider == "offline"
    assert row.cost == 0.0 and row.api_base is None  # priced and addressed as the model that answered


async def test_call_plugins_reach_an_engine_configured_inside_the_block_and_leave_with_it(engine, tmp_path):
    observer = Observer()
    with call_plugins(observer):
        engine = configure(database_url="memory://", data_dir=tmp_path / "other", model="offline/default")
        await complete(MESSAGES, model="offline/default")
        assert len(observer.seen) == 1
    assert call_listeners(engine) == []
    await complete(MESSAGES, model="offline/default")
    assert len(observer.seen) == 1
    assert get_engine() is engine


async def test_call_plugins_take_no_part_in_calls_made_outside_their_block(engine):
    """A task started outside the block, running while the block's plugins sit on the same engine,
    reaches the model itself: another test's script or cassette never answers it."""
    import asyncio

    outside_may_call = asyncio.Event()

    async def outside() -> Any:
        await outside_may_call.wait()
        return await complete(MESSAGES, model="offline/default")

    beside = asyncio.create_task(outside())  # its context has no block's plugins

    class Scripted:
        @hookimpl(wrapper=True)
        def wrap_llm_call(self, call: LLMCallInfo) -> Generator[None, Send, Send]:
            yield

            async def scripted() -> Any:
                return _answer("scripted")

            return scripted

    with call_plugins(Scripted()):
        inside = await complete(MESSAGES, model="offline/default")  # registers it on the engine
        outside_may_call.set()
        beside_call = await beside
        assert inside.text == "scripted"
        assert beside_call.text == "[offline:default] Say hello"  # the offline model's own answer


async def test_a_task_started_in_a_block_calling_after_the_block_ended_reaches_the_model(engine):
    """The task keeps the block's context, not the block: its late call is the model's, and the block's
    plugin is not registered again (it would stay on the engine for good)."""
    import asyncio

    may_call = asyncio.Event()

    async def late() -> Any:
        await may_call.wait()
        return await complete(MESSAGES, model="offline/default")

    class Scripted:
        @hookimpl(wrapper=True)
        def wrap_llm_call(self, call: LLMCallInfo) -> Generator[None, Send, Send]:
            yield

            async def scripted() -> Any:
                return _answer("scripted")

            return scripted

    with call_plugins(Scripted()):
        assert (await complete(MESSAGES, model="offline/default")).text == "scripted"
        task = asyncio.create_task(late())
    may_call.set()
    assert (await task).text == "[offline:default] Say hello"
    assert call_listeners(engine) == []
