"""Lifecycle hooks: sync and ``async def`` implementations are called, in order, with what happened."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import BaseModel

from flow_engine import BaseFlow, BaseStep, hookimpl
from flow_engine.runtime_info import FlowEvent, StepEvent


class Ok(BaseStep):
    async def run(self, inputs: Any) -> str:
        return "fine"


class Bad(BaseStep):
    async def run(self, inputs: Any) -> None:
        raise ValueError("nope")


class Flow(BaseFlow):
    flow_name = "hooked"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        await Ok().execute({})
        if inputs.get("fail"):
            await Bad().execute({})
        return {"done": True}


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    @hookimpl
    def before_flow(self, event: FlowEvent) -> None:
        self.calls.append(("before_flow", event.flow_name))

    @hookimpl
    async def after_flow(self, event: FlowEvent) -> None:
        await asyncio.sleep(0)
        self.calls.append(("after_flow", event.outputs))

    @hookimpl
    async def on_flow_error(self, event: FlowEvent) -> None:
        self.calls.append(("on_flow_error", type(event.error).__name__))

    @hookimpl
    async def on_flow_stop(self, event: FlowEvent) -> None:
        self.calls.append(("on_flow_stop", (event.status, type(event.error).__name__)))

    @hookimpl
    def before_step(self, event: StepEvent) -> None:
        self.calls.append(("before_step", (event.step_key, event.step_order, event.step_id is not None)))

    @hookimpl
    async def after_step(self, event: StepEvent) -> None:
        self.calls.append(("after_step", event.result.output_content))

    @hookimpl
    def on_step_error(self, event: StepEvent) -> None:
        self.calls.append(("on_step_error", str(event.error)))


@pytest.fixture
def recorder(engine):
    rec = Recorder()
    engine.plugins.register(rec, name="recorder")
    yield rec
    engine.plugins.unregister("recorder")


async def test_hooks_fire_in_order_sync_and_async(recorder):
    await Flow().execute({})
    assert recorder.calls == [
        ("before_flow", "hooked"),
        ("before_step", ("ok", 1, True)),
        ("after_step", "fine"),
        ("after_flow", {"done": True}),
    ]


async def test_error_hooks_fire_after_failure_is_stored(recorder, engine):
    flow = Flow()
    with pytest.raises(ValueError):
        await flow.execute({"fail": True})
    assert recorder.calls[-2:] == [("on_step_error", "nope"), ("on_flow_error", "ValueError")]
    assert engine.store.get_run(flow.run_id).status == "failed"


class Hangs(BaseFlow):
    flow_name = "hangs"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        await Ok().execute({})
        await asyncio.sleep(30)
        return {}


class GoOn(BaseModel):
    go: bool


class Waits(BaseFlow):
    flow_name = "waits"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        await self.wait_for_input("go", GoOn, prompt="Go on?")
        return {}


async def test_a_run_that_stops_cancelled_or_waiting_fires_on_flow_stop_with_its_status(recorder, engine):
    from flow_engine import RunWaiting

    flow = Hangs()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(flow.execute({}), 0.3)
    assert recorder.calls[-1] == ("on_flow_stop", ("cancelled", "CancelledError"))
    assert engine.store.get_run(flow.run_id).status == "cancelled"

    waiting = Waits()
    with pytest.raises(RunWaiting):
        await waiting.execute({})
    assert recorder.calls[-1] == ("on_flow_stop", ("waiting", "RunWaiting"))
    assert not any(name == "on_flow_error" for name, _ in recorder.calls)


async def test_a_raising_hook_fails_the_flow(engine):
    class Strict:
        @hookimpl
        def before_step(self, event: StepEvent) -> None:
            raise PermissionError("not allowed")

    engine.plugins.register(Strict(), name="strict")
    flow = Flow()
    with pytest.raises(PermissionError):
        await flow.execute({})
    assert engine.store.get_run(flow.run_id).error_message == "PermissionError: not allowed"
    [step] = engine.store.list_steps(flow.run_id)  # not left 'running'
    assert (step.status, step.error_message) == ("failed", "PermissionError: not allowed")


async def test_step_hooks_registered_or_unregistered_after_steps_ran_take_effect(engine):
    """Whether any plugin listens to step hooks is remembered between steps; registering or
    unregistering a plugin must make the next step ask again."""
    await Ok().execute({})  # nobody listens yet: remembered as such
    rec = Recorder()
    engine.plugins.register(rec, name="late-recorder")
    await Ok().execute({})
    assert rec.calls == [("before_step", (None, None, False)), ("after_step", "fine")]
    engine.plugins.unregister("late-recorder")
    await Ok().execute({})
    assert len(rec.calls) == 2


class Child(BaseFlow):
    flow_name = "hooked_child"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return {}


class StartsChild(BaseStep):
    step_name = "starts_child"

    async def run(self, inputs: Any) -> str:
        await Child().execute({})
        return "started"


class ParentWithBudget(BaseFlow):
    flow_name = "hooked_parent"
    max_cost = 2.0

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        await StartsChild().execute({})
        await Child().execute({})  # started by the flow's own code: no parent step
        return {}


async def test_before_flow_names_the_step_that_started_a_child_run_and_the_budget_that_applies(engine):
    events: list[FlowEvent] = []
    steps: dict[str, Any] = {}

    class Listener:
        @hookimpl
        def before_flow(self, event: FlowEvent) -> None:
            events.append(event)

        @hookimpl
        def before_step(self, event: StepEvent) -> None:
            steps[event.step_name] = event.step_id

    engine.plugins.register(Listener(), name="listener")
    try:
        await ParentWithBudget().execute({}, max_tokens=500)
    finally:
        engine.plugins.unregister("listener")
    parent, from_step, from_flow = events
    assert (parent.parent_run_id, parent.parent_step_id) == (None, None)
    assert (parent.max_cost, parent.max_tokens) == (2.0, 500)  # the class's cost, the given tokens
    assert from_step.parent_run_id == parent.run_id
    assert from_step.parent_step_id == steps["starts_child"] is not None
    assert (from_step.max_cost, from_step.max_tokens) == (2.0, 500)  # what the parent had left: all
    assert from_flow.parent_run_id == parent.run_id and from_flow.parent_step_id is None


class Starter:
    def __init__(self) -> None:
        self.engines: list[Any] = []

    @hookimpl
    def engine_started(self, engine: Any) -> None:
        self.engines.append(engine)


class BrokenStarter:
    @hookimpl
    def engine_started(self, engine: Any) -> None:
        raise RuntimeError("cannot start")

    @hookimpl
    def before_flow(self, event: Any) -> None:
        raise AssertionError("a plugin that failed to start observed a run")


async def test_engine_started_is_called_once_before_the_first_run_and_one_that_raises_fails_its_plugin(
    engine,
):
    starter = Starter()
    engine.plugins.register(starter, name="starter")
    engine.plugins.register(BrokenStarter(), name="broken_starter")
    assert starter.engines == []  # configuring an engine does not start it
    with pytest.warns(RuntimeWarning, match="engine_started raised RuntimeError"):
        await Flow().execute({})
    await Flow().execute({})
    assert starter.engines == [engine]
    [broken] = [s for s in engine.plugins.statuses if s.name == "broken_starter"]
    assert broken.status == "failed" and broken.error == "engine_started raised RuntimeError: cannot start"
    assert not engine.plugins.pm.has_plugin("broken_starter")  # none of its other hooks runs


async def test_engine_started_is_called_before_an_llm_call_made_outside_any_run(engine):
    from flow_engine.plugin import complete

    starter = Starter()
    engine.plugins.register(starter, name="starter")
    await complete([{"role": "user", "content": "hi"}], model="offline/default")
    assert starter.engines == [engine]


class Tagger:
    """Adds metadata at submission, and keeps every flow event it sees."""

    def __init__(self) -> None:
        self.events: list[FlowEvent] = []

    @hookimpl
    def submit_metadata(self, flow_name: str) -> dict[str, Any]:
        return {"tagger": {"submitted_as": flow_name}}

    @hookimpl
    def before_flow(self, event: FlowEvent) -> None:
        self.events.append(event)


class Spends(BaseFlow):
    flow_name = "spends"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        from flow_engine import UnstructuredStep

        class Ask(UnstructuredStep):
            step_name = "ask"
            model = "offline/default"

            class Inputs(BaseModel):
                prompt: str

        return {"text": (await Ask().execute({"prompt": "hello"})).output_content}


async def test_flow_events_carry_the_runs_metadata_user_and_totals(engine):
    import uuid

    from flow_engine.submit import wait_for_run

    tagger = Tagger()
    engine.plugins.register(tagger, name="tagger")
    user = uuid.uuid4()
    run_id = await Spends().submit({}, user_id=user, executor="local", metadata={"team": "a"})
    await wait_for_run(run_id, poll_interval=0.01)
    [event] = tagger.events
    assert event.user_id == user
    assert event.metadata["team"] == "a" and event.metadata["tagger"] == {"submitted_as": "spends"}
    stored = engine.store.get_run(run_id)
    assert stored is not None and stored.total_tokens > 0
    assert (event.total_tokens, event.total_cost) == (stored.total_tokens, stored.total_cost)
