"""The span tree of runs, steps and LLM calls, with the application's provider and in-memory exporters."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import uuid
from typing import Any

import pytest
from opentelemetry.trace import SpanKind, StatusCode
from pydantic import BaseModel

from flow_engine import BaseFlow, BaseStep, StructuredStep, UnstructuredStep, resume_run
from flow_engine.llm.hook import call_listeners
from tests.fake_openai_server import API_KEY, Fault, Reply, use_fake_openai

pytestmark = pytest.mark.usefixtures("no_network")


class Ask(UnstructuredStep):
    model = "openai/gpt-4o-mini"
    llm_params = {"temperature": 0.2, "max_tokens": 40}

    class Inputs(BaseModel):
        prompt: str


class Summarise(Ask):
    step_name = "summarise"


class Title(Ask):
    step_name = "title"


class TwoCalls(BaseFlow):
    flow_name = "two_calls"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        summary = await Summarise().execute({"prompt": "Summarise the secret plan"})
        title = await Title().execute({"prompt": "Title it"})
        return {"summary": summary.output_content, "title": title.output_content}


class Child(BaseFlow):
    flow_name = "child"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        title = await Title().execute({"prompt": "Child title"})
        return {"title": title.output_content}


class Parent(BaseFlow):
    flow_name = "parent"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        await Summarise().execute({"prompt": "Parent summary"})
        return await Child().execute({})


class ManyCalls(BaseStep):
    """More calls than a step's span holds back (the tracer makes its span at the 17th)."""

    step_name = "many_calls"

    async def run(self, inputs: Any) -> str:
        from flow_engine.plugin import complete

        for i in range(20):
            await complete([{"role": "user", "content": f"call {i}"}], model="openai/gpt-4o-mini")
        return "done"


class CallThenChild(BaseStep):
    step_name = "call_then_child"

    async def run(self, inputs: Any) -> str:
        from flow_engine.plugin import complete

        await complete([{"role": "user", "content": "first"}], model="openai/gpt-4o-mini")
        return (await Child().execute({}))["title"]


class OneStep(BaseFlow):
    flow_name = "one_step"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        step = ManyCalls() if inputs["many"] else CallThenChild()
        return {"out": (await step.execute({})).output_content}


FAIL = {"on": True}


class Flaky(BaseStep):
    step_name = "flaky"

    async def run(self, inputs: Any) -> str:
        if FAIL["on"]:
            raise RuntimeError("flaky failed")
        return "ok"


class Resumable(BaseFlow):
    flow_name = "resumable"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        await Summarise().execute({"prompt": "Before the failure"})
        await Flaky().execute({})
        return {"done": True}


@pytest.fixture
def online(fake_openai, tmp_path, spans):
    use_fake_openai(fake_openai.base_url, tmp_path, otel=True)
    return fake_openai


def by_name(spans, name: str) -> list[Any]:
    return [s for s in spans.get_finished_spans() if s.name == name]


def one(spans, name: str) -> Any:
    [span] = by_name(spans, name)
    return span


def children(spans, parent) -> list[Any]:
    return [s for s in spans.get_finished_spans() if s.parent and s.parent.span_id == parent.context.span_id]


async def test_a_flow_with_two_llm_steps_is_one_trace(online, spans):
    online.script(Reply("A summary", usage=(30, 5)), Reply("A title", usage=(12, 3)))
    flow = TwoCalls()
    await flow.execute({})

    run = one(spans, "invoke_workflow two_calls")
    assert run.parent is None
    assert run.attributes["gen_ai.operation.name"] == "invoke_workflow"
    assert run.attributes["flow_engine.run.id"] == str(flow.run_id)
    assert run.attributes["flow_engine.run.status"] == "completed"
    assert run.attributes["flow_engine.run.total_tokens"] == 50
    assert run.attributes["flow_engine.run.total_cost"] > 0
    steps = sorted(children(spans, run), key=lambda s: s.attributes["flow_engine.step.order"])
    assert [s.name for s in steps] == ["step summarise", "step title"]
    assert steps[0].attributes["flow_engine.step.tokens"] == 35
    assert steps[0].attributes["flow_engine.step.status"] == "completed"
    assert steps[0].attributes["flow_engine.step.cost"] > 0

    calls = [children(spans, s) for s in steps]
    assert [len(c) for c in calls] == [1, 1]
    chat = calls[0][0]
    assert chat.name == "chat gpt-4o-mini" and chat.kind is SpanKind.CLIENT
    assert chat.context.trace_id == run.context.trace_id
    a = chat.attributes
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == "gpt-4o-mini"
    assert a["gen_ai.response.model"]
    assert a["gen_ai.response.id"]
    assert tuple(a["gen_ai.response.finish_reasons"]) == ("stop",)
    assert a["gen_ai.usage.input_tokens"] == 30 and a["gen_ai.usage.output_tokens"] == 5
    assert a["gen_ai.request.temperature"] == 0.2 and a["gen_ai.request.max_tokens"] == 40
    assert a["server.address"] == "127.0.0.1" and a["server.port"] == int(online.base_url.split(":")[2][:-3])
    assert a["flow_engine.llm.attempt"] == 1
    assert "error.type" not in a
    assert calls[1][0].attributes["gen_ai.usage.input_tokens"] == 12


async def test_content_is_absent_unless_opted_in_and_no_key_anywhere(online, spans, monkeypatch):
    monkeypatch.delenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", raising=False)
    online.script(Reply("The answer text"), Reply("Another"))
    await TwoCalls().execute({})
    everything = repr([dict(s.attributes) for s in spans.get_finished_spans()])
    assert "secret plan" not in everything and "The answer text" not in everything
    assert API_KEY not in everything

    spans.clear()
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    online.script(Reply("The answer text"), Reply("Another"))
    await TwoCalls().execute({})
    chat = by_name(spans, "chat gpt-4o-mini")[0]
    # the conventions' message format: a role and its parts; an output message's finish reason
    assert json.loads(chat.attributes["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "Summarise the secret plan"}]}
    ]
    assert json.loads(chat.attributes["gen_ai.output.messages"]) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "The answer text"}],
            "finish_reason": "stop",
        }
    ]
    everything = repr([dict(s.attributes) for s in spans.get_finished_spans()])
    assert API_KEY not in everything


async def test_each_attempt_of_a_retried_call_is_a_span_with_its_wait(online, spans):
    online.fail_next(Fault.status(503))
    online.script(Reply("A summary"), Reply("A title"))
    await TwoCalls().execute({})
    step = one(spans, "step summarise")
    attempts = sorted(children(spans, step), key=lambda s: s.attributes["flow_engine.llm.attempt"])
    assert [s.attributes["flow_engine.llm.attempt"] for s in attempts] == [1, 2]
    failed, retried = attempts
    assert failed.attributes["error.type"] == "503" and failed.status.status_code is StatusCode.ERROR
    assert failed.attributes["flow_engine.llm.call_id"] == retried.attributes["flow_engine.llm.call_id"]
    assert "error.type" not in retried.attributes
    assert retried.attributes["flow_engine.llm.retry_wait_s"] >= 0.005  # the backoff (0.01 s +- jitter)
    assert retried.start_time >= failed.end_time


async def test_a_failed_step_marks_its_span_and_the_run(online, spans):
    online.fail_next(Fault.status(400))  # not transient: the step fails
    with pytest.raises(Exception):  # noqa: B017 - the LLM error as the engine raises it
        await TwoCalls().execute({})
    step = one(spans, "step summarise")
    assert step.status.status_code is StatusCode.ERROR
    assert step.attributes["flow_engine.step.status"] == "failed"
    assert step.attributes["error.type"]
    [call] = children(spans, step)
    assert call.attributes["error.type"] == "400"
    run = one(spans, "invoke_workflow two_calls")
    assert run.status.status_code is StatusCode.ERROR
    assert run.attributes["flow_engine.run.status"] == "failed"
    assert not by_name(spans, "step title")


async def test_a_child_flow_nests_under_its_parent(online, spans):
    await Parent().execute({})
    parent = one(spans, "invoke_workflow parent")
    child = one(spans, "invoke_workflow child")
    assert child.parent.span_id == parent.context.span_id
    assert child.context.trace_id == parent.context.trace_id
    assert child.attributes["flow_engine.run.parent_id"] == parent.attributes["flow_engine.run.id"]
    [title] = children(spans, child)
    assert title.name == "step title"
    assert [c.name for c in children(spans, title)] == ["chat gpt-4o-mini"]


def within(inner, outer) -> bool:
    return outer.start_time <= inner.start_time <= inner.end_time <= outer.end_time


async def test_a_step_making_many_calls_has_every_call_span_under_it_in_order(online, spans):
    await OneStep().execute({"many": True})
    step = one(spans, "step many_calls")
    calls = children(spans, step)
    assert len(calls) == 20 and all(c.name == "chat gpt-4o-mini" for c in calls)
    assert all(within(c, step) for c in calls)
    in_time = sorted(calls, key=lambda c: c.start_time)
    assert [c.attributes["flow_engine.llm.call_index"] for c in in_time] == list(range(1, 21))
    assert all(a.end_time <= b.start_time for a, b in itertools.pairwise(in_time))
    assert len(by_name(spans, "invoke_workflow one_step")) == 1


async def test_a_child_flow_started_inside_a_step_nests_under_that_step(online, spans):
    await OneStep().execute({"many": False})
    step = one(spans, "step call_then_child")
    child = one(spans, "invoke_workflow child")
    assert child.parent.span_id == step.context.span_id
    assert within(child, step)
    [call] = [c for c in children(spans, step) if c.name == "chat gpt-4o-mini"]
    assert within(call, step) and call.end_time <= child.start_time
    [title] = children(spans, child)
    assert [c.name for c in children(spans, title)] == ["chat gpt-4o-mini"]


async def test_a_step_span_is_exported_soon_after_the_step_while_its_run_goes_on(online, spans, monkeypatch):
    """Ended steps' spans are made a few at a time; a run that goes on does not hold them for long."""
    from flow_engine.plugins.otel import tracer

    monkeypatch.setattr(tracer, "_HOLD_SECONDS", 0.05)
    seen: list[list[str]] = []

    class SlowAfterOneStep(BaseFlow):
        flow_name = "slow_after_one_step"

        async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
            await Title().execute({"prompt": "Title it"})
            seen.append([s.name for s in spans.get_finished_spans()])
            await asyncio.sleep(0.3)
            seen.append([s.name for s in spans.get_finished_spans()])
            return {}

    await SlowAfterOneStep().execute({})
    assert "step title" not in seen[0]  # held with the next steps'...
    assert {"step title", "chat gpt-4o-mini"} <= set(seen[1])  # ...but not for long
    assert "invoke_workflow slow_after_one_step" not in seen[1]


async def test_ended_steps_spans_are_made_when_a_burst_is_full(online, spans, monkeypatch):
    """Many fast steps: their spans go out each time the burst is full, not only on the timer."""
    from flow_engine.plugins.otel import tracer

    monkeypatch.setattr(tracer, "_HELD_STEPS", 3)
    monkeypatch.setattr(tracer, "_HOLD_SECONDS", 60)
    seen: list[list[str]] = []

    class Quick(BaseStep):
        step_name = "quick"

        async def run(self, inputs: Any) -> int:
            return int(inputs["n"])

    class FourQuickSteps(BaseFlow):
        flow_name = "four_quick_steps"

        async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
            for n in range(4):
                await Quick().execute({"n": n})
                seen.append([s.attributes.get("flow_engine.step.order") for s in spans.get_finished_spans()])
            return {}

    await FourQuickSteps().execute({})
    assert seen == [[], [], [1, 2, 3], [1, 2, 3]]  # the 4th step's span waits for the run's end
    ended = [s.attributes.get("flow_engine.step.order") for s in spans.get_finished_spans()]
    assert ended[:4] == [1, 2, 3, 4]


class CallThenHang(BaseStep):
    step_name = "call_then_hang"

    async def run(self, inputs: Any) -> str:
        from flow_engine.plugin import complete

        await complete([{"role": "user", "content": "first"}], model="openai/gpt-4o-mini")
        await asyncio.sleep(30)
        return "never"


class GivesUpOnAStep(BaseFlow):
    flow_name = "gives_up_on_a_step"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(CallThenHang().execute({}), 0.5)
        return {}


async def test_a_step_cancelled_inside_a_run_that_ends_is_exported_as_cancelled(online, spans):
    await GivesUpOnAStep().execute({})
    step = one(spans, "step call_then_hang")
    assert step.attributes["flow_engine.step.status"] == "cancelled"
    assert step.parent.span_id == one(spans, "invoke_workflow gives_up_on_a_step").context.span_id
    assert [c.name for c in children(spans, step)] == ["chat gpt-4o-mini"]


async def test_spans_made_by_the_flows_own_code_nest_under_its_run(online, spans):
    from opentelemetry import trace

    class Instrumented(BaseFlow):
        flow_name = "instrumented"

        async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
            with trace.get_tracer("the-application").start_as_current_span("own work"):
                await Title().execute({"prompt": "Title it"})
            return {}

    with trace.get_tracer("the-application").start_as_current_span("request") as request:
        await Instrumented().execute({})
        assert trace.get_current_span() is request  # the run's span is current no longer
    run = one(spans, "invoke_workflow instrumented")
    assert run.parent.span_id == request.get_span_context().span_id
    assert one(spans, "own work").parent.span_id == run.context.span_id
    assert one(spans, "step title").parent.span_id == run.context.span_id


class Hangs(BaseFlow):
    flow_name = "hangs"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"out": (await CallThenHang().execute({})).output_content}


class GoOn(BaseModel):
    go: bool


class AsksFirst(BaseFlow):
    flow_name = "asks_first"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        await Title().execute({"prompt": "Title it"})
        answer = await self.wait_for_input("go", GoOn, prompt="Go on?")
        return {"go": answer.go}


async def test_a_cancelled_run_ends_its_span_and_its_step_as_cancelled_not_failed(online, spans):
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(Hangs().execute({}), 0.5)
    run = one(spans, "invoke_workflow hangs")
    assert run.attributes["flow_engine.run.status"] == "cancelled"
    assert run.status.status_code is not StatusCode.ERROR and "error.type" not in run.attributes
    step = one(spans, "step call_then_hang")
    assert step.parent.span_id == run.context.span_id
    assert step.attributes["flow_engine.step.status"] == "cancelled"
    assert [c.name for c in children(spans, step)] == ["chat gpt-4o-mini"]


async def test_a_waiting_run_ends_its_span_and_the_answered_run_links_to_it(online, spans):
    from flow_engine import RunWaiting, respond_to_run

    flow = AsksFirst()
    with pytest.raises(RunWaiting):
        await flow.execute({})
    [waiting] = by_name(spans, "invoke_workflow asks_first")
    assert waiting.attributes["flow_engine.run.status"] == "waiting"
    assert waiting.status.status_code is not StatusCode.ERROR
    spans.clear()
    assert await respond_to_run(str(flow.run_id), "go", {"go": True}) == {"go": True}
    [answered] = by_name(spans, "invoke_workflow asks_first")
    assert answered.attributes["flow_engine.run.status"] == "completed"
    [link] = answered.links
    assert link.context.span_id == waiting.context.span_id


async def test_a_resumed_run_links_to_its_first_attempt(online, spans):
    FAIL["on"] = True
    flow = Resumable()
    with pytest.raises(RuntimeError):
        await flow.execute({})
    [first] = by_name(spans, "invoke_workflow resumable")
    FAIL["on"] = False
    spans.clear()
    await resume_run(flow.run_id)
    [second] = by_name(spans, "invoke_workflow resumable")
    assert second.attributes["flow_engine.run.id"] == first.attributes["flow_engine.run.id"]
    [link] = second.links
    assert link.context.trace_id == first.context.trace_id
    assert link.context.span_id == first.context.span_id
    assert second.attributes["flow_engine.run.status"] == "completed"


async def test_off_by_default(fake_openai, tmp_path, spans):
    use_fake_openai(fake_openai.base_url, tmp_path)
    await TwoCalls().execute({})
    assert spans.get_finished_spans() == ()
    # off, nothing of tracing listens to steps or LLM calls: no step pays for building an event
    from flow_engine.engine import get_engine

    plugins = get_engine().plugins
    assert not plugins.step_hooks_listened()
    assert call_listeners(get_engine()) == []


async def test_the_step_and_call_hooks_are_registered_by_the_first_traced_run(online, spans):
    from flow_engine.engine import get_engine

    plugins = get_engine().plugins
    assert not plugins.step_hooks_listened()
    await TwoCalls().execute({})
    assert plugins.step_hooks_listened()
    assert call_listeners(get_engine()) == ["otel.tracing"]
    assert len(by_name(spans, "chat gpt-4o-mini")) == 2


class Spawn(BaseStep):
    """A step that starts a child run: the child's span belongs under this step's."""

    step_name = "spawn"

    class Inputs(BaseModel):
        label: str

    async def run(self, inputs: Any) -> str:
        await asyncio.sleep(0.01 if inputs.label == "a" else 0.1)  # a's child starts while b's step runs
        return (await Labelled().execute({"label": inputs.label}))["label"]


class Labelled(BaseFlow):
    flow_name = "labelled"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"label": inputs["label"]}


class SpawnsTwoAtOnce(BaseFlow):
    flow_name = "spawns_two_at_once"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"labels": await self.map(Spawn, [{"label": "a"}, {"label": "b"}], concurrency=2)}


async def test_child_runs_of_steps_running_at_once_nest_under_the_step_that_started_each(online, spans):
    await SpawnsTwoAtOnce().execute({})
    steps = {s.attributes["flow_engine.step.key"]: s for s in by_name(spans, "step spawn")}
    assert len(steps) == 2
    children_of = {}
    for child in by_name(spans, "invoke_workflow labelled"):
        [parent] = [s for s in steps.values() if s.context.span_id == child.parent.span_id]
        children_of[child.attributes["flow_engine.run.id"]] = parent
    assert len(children_of) == 2 and len({id(s) for s in children_of.values()}) == 2
    for child in by_name(spans, "invoke_workflow labelled"):
        assert within(child, children_of[child.attributes["flow_engine.run.id"]])


class GivesUpThenSpawns(BaseFlow):
    flow_name = "gives_up_then_spawns"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(CallThenHang().execute({}), 0.3)
        return await Labelled().execute({"label": "after"})


async def test_a_child_run_started_by_the_flow_after_it_gave_up_on_a_step_nests_under_the_run(online, spans):
    await GivesUpThenSpawns().execute({})
    run = one(spans, "invoke_workflow gives_up_then_spawns")
    child = one(spans, "invoke_workflow labelled")
    assert child.parent.span_id == run.context.span_id


class Budgeted(BaseFlow):
    flow_name = "budgeted"
    max_cost = 1.5
    max_tokens = 1000

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        await Title().execute({"prompt": "Title it"})
        return await Labelled().execute({"label": "child"})


async def test_the_run_span_names_the_workflow_its_user_and_the_budget_that_applies(online, spans):
    user = uuid.uuid4()
    await Budgeted().execute({}, user_id=user)
    run = one(spans, "invoke_workflow budgeted")
    assert run.attributes["gen_ai.workflow.name"] == "budgeted"
    assert run.attributes["user.id"] == str(user)
    assert run.attributes["flow_engine.budget.max_cost"] == 1.5  # the class's, not given to execute()
    assert run.attributes["flow_engine.budget.max_tokens"] == 1000
    child = one(spans, "invoke_workflow labelled")  # what its parent had left when it started
    assert 0 < child.attributes["flow_engine.budget.max_cost"] < 1.5
    spent = run.attributes["flow_engine.run.total_tokens"]
    assert child.attributes["flow_engine.budget.max_tokens"] == 1000 - spent
    assert child.attributes["user.id"] == str(user)
    step = one(spans, "step title")
    assert step.attributes["flow_engine.step.key"] == "title"
    assert step.attributes["flow_engine.step.type"] == "unstructured_llm"


async def test_a_resumed_background_run_is_a_new_trace_where_it_resumes_linked_to_its_first(online, spans):
    """A background run's first start continues its submitter's trace; resumed later (by a person, a
    recovery), the submitter's span is long ended: the resumed run starts in the current context."""
    from opentelemetry import trace

    from flow_engine.engine import get_engine

    FAIL["on"] = True
    flow = Resumable()
    with pytest.raises(RuntimeError):
        await flow.execute({})
    [first] = by_name(spans, "invoke_workflow resumable")
    store = get_engine().store
    meta = dict(store.get_run(flow.run_id).flow_metadata or {})
    submitter = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"  # as a background submission leaves it
    meta["otel"] = {**meta["otel"], "submitted": submitter}
    await store.update_run(flow.run_id, {"flow_metadata": meta})
    FAIL["on"] = False
    spans.clear()
    with trace.get_tracer("the-application").start_as_current_span("resume request") as request:
        await resume_run(flow.run_id)
    [second] = by_name(spans, "invoke_workflow resumable")
    assert second.parent.span_id == request.get_span_context().span_id
    assert second.context.trace_id == request.get_span_context().trace_id != int("ab" * 16, 16)
    [link] = second.links
    assert link.context.span_id == first.context.span_id


async def test_a_retry_keeps_its_calls_index_and_nothing_of_a_failed_call_is_kept(online, spans):
    from flow_engine.engine import get_engine
    from flow_engine.plugins.otel.state import active

    online.fail_next(Fault.status(503))
    online.script(Reply("A summary"), Reply("A title"))
    await TwoCalls().execute({})
    attempts = children(spans, one(spans, "step summarise"))
    assert sorted(s.attributes["flow_engine.llm.call_index"] for s in attempts) == [1, 1]

    online.fail_next(Fault.status(503), times=3)  # every attempt fails
    with pytest.raises(Exception):  # noqa: B017 - the LLM error as the engine raises it
        await TwoCalls().execute({})
    tracer = active()
    assert tracer is not None and get_engine() is not None
    assert tracer.steps == {} and tracer.runs == {} and tracer.failed_attempts == {}


class Point(BaseModel):
    x: int
    y: int


class Locate(StructuredStep):
    step_name = "locate"
    model = "openai/gpt-4o-mini"
    Outputs = Point

    class Inputs(BaseModel):
        prompt: str


class Locates(BaseFlow):
    flow_name = "locates"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return (await Locate().execute({"prompt": "Where?"})).output_content


async def test_a_structured_answer_re_asked_is_a_second_call_of_its_step(online, spans):
    online.script(Reply(json={"x": 1}), Reply(json={"x": 1, "y": 2}))  # y missing: re-asked
    assert await Locates().execute({}) == {"x": 1, "y": 2}
    calls = sorted(children(spans, one(spans, "step locate")), key=lambda s: s.start_time)
    assert [c.attributes["flow_engine.llm.call_index"] for c in calls] == [1, 2]
    assert [c.attributes["flow_engine.llm.attempt"] for c in calls] == [1, 1]
    assert all(c.attributes["gen_ai.output.type"] == "json" for c in calls)


class AskUnprefixed(UnstructuredStep):
    step_name = "ask_unprefixed"
    model = "gpt-4o-mini"  # litellm's provider for it: openai
    llm_params = {"stop": "END", "seed": 7, "top_p": 0.5}

    class Inputs(BaseModel):
        prompt: str


class Unprefixed(BaseFlow):
    flow_name = "unprefixed"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"text": (await AskUnprefixed().execute({"prompt": "Hi"})).output_content}


async def test_a_model_named_without_its_provider_gets_the_provider_litellm_picks(online, spans):
    await Unprefixed().execute({})
    [call] = by_name(spans, "chat gpt-4o-mini")
    a = call.attributes
    assert a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == "gpt-4o-mini"
    assert tuple(a["gen_ai.request.stop_sequences"]) == ("END",)
    assert a["gen_ai.request.seed"] == 7 and a["gen_ai.request.top_p"] == 0.5


async def test_the_server_litellm_was_sent_to_is_named_when_the_call_gave_no_api_base(
    fake_openai, tmp_path, spans, monkeypatch
):
    use_fake_openai(fake_openai.base_url, tmp_path, otel=True, api_base=None)
    monkeypatch.setenv("OPENAI_API_BASE", fake_openai.base_url)  # litellm's variable for openai's base
    await TwoCalls().execute({})
    call = by_name(spans, "chat gpt-4o-mini")[0]
    assert call.attributes["server.address"] == "127.0.0.1"
    assert call.attributes["server.port"] == int(fake_openai.base_url.split(":")[2].split("/")[0])


def test_litellm_provider_names_become_the_conventions_well_known_values():
    from flow_engine.plugins.otel.tracer import provider_name

    assert provider_name("bedrock") == "aws.bedrock"
    assert provider_name("vertex_ai") == "gcp.vertex_ai"
    assert provider_name("gemini") == "gcp.gemini"
    assert provider_name("azure") == "azure.ai.openai"
    assert provider_name("mistral") == "mistral_ai"
    assert provider_name("xai") == "x_ai"
    assert provider_name("openai") == "openai" and provider_name("anthropic") == "anthropic"
    assert provider_name("ollama") == "ollama"  # not listed by the conventions: litellm's name
    assert provider_name(None) is None


def test_messages_with_parts_and_tool_calls_keep_them_in_the_conventions_format():
    from flow_engine.plugins.otel.tracer import input_messages

    assert input_messages(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
            ]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "look", "arguments": "{}"}}
            ]},
            {"role": "tool", "tool_call_id": "c1", "content": "a cat"},
        ]
    ) == [
        {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
        {"role": "user", "parts": [
            {"type": "text", "content": "What is this?"},
            {"type": "uri", "modality": "image", "uri": "https://example.com/a.png"},
        ]},
        {"role": "assistant", "parts": [
            {"type": "tool_call", "id": "c1", "name": "look", "arguments": "{}"},
        ]},
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "c1", "response": "a cat"}]},
    ]  # fmt: skip


async def test_an_image_call_outside_any_run_is_a_generate_content_span_with_an_image_output(online, spans):
    """Made outside any run, too: under the span current at the call."""
    from opentelemetry import trace

    from flow_engine.plugin import generate_image

    with trace.get_tracer("the-application").start_as_current_span("request") as request:
        await generate_image("a cat", model="openai/gpt-image-1", api_base=online.base_url)
    [call] = by_name(spans, "generate_content gpt-image-1")
    assert call.parent.span_id == request.get_span_context().span_id
    assert call.kind is SpanKind.CLIENT
    assert call.attributes["gen_ai.operation.name"] == "generate_content"
    assert call.attributes["gen_ai.output.type"] == "image"
    assert call.attributes["gen_ai.provider.name"] == "openai"


def test_a_message_of_an_unexpected_shape_is_recorded_empty_not_an_error():
    """The tracer runs inside every traced call: a message it cannot read must not fail the call."""
    from flow_engine.plugins.otel.tracer import input_messages

    assert input_messages(["not a message", {"role": "assistant", "tool_calls": [42]}]) == [
        {"role": "assistant", "parts": []},
        {"role": "assistant", "parts": [{"type": "tool_call", "id": None, "name": None, "arguments": None}]},
    ]
