"""Hostile values, raising hooks, budgets and resumes: every run and step row ends terminal, on SQLite
and PostgreSQL, and the caller gets a clear error (issue 22)."""

from __future__ import annotations

import asyncio
import math
import warnings
from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from flow_engine import configure
from flow_engine.engine import get_engine
from flow_engine.errors import FlowEngineError, InputValidationError, UsageError
from flow_engine.flows import BaseFlow
from flow_engine.plugin import LLMStep, complete, hookimpl
from flow_engine.steps import BaseStep
from flow_engine.storage import utcnow
from tests.plugins.sql.databases import BACKENDS

TERMINAL = {"completed", "failed", "cancelled"}


@pytest.fixture(params=BACKENDS)
def backend(request, tmp_path):
    if request.param == "sqlite":
        yield configure(database_url=f"sqlite:///{tmp_path / 'edges.db'}", data_dir=tmp_path / "data")
        return
    from flow_engine.plugins.sql import migrate
    from tests.plugins.sql.databases import pg_schema

    with pg_schema() as url:
        migrate.upgrade(url)
        yield configure(database_url=url, data_dir=tmp_path / "data")
        get_engine().close()


def all_terminal() -> list[Any]:
    store = get_engine().store
    runs = store.list_runs(limit=1000)
    for run in runs:
        assert run.status in TERMINAL, run
        for step in store.list_steps(run.id):
            assert step.status in TERMINAL, step
    return runs


class Returns(BaseStep):
    step_name = "returns"
    value: Any = None

    async def run(self, inputs):
        return type(self).value


class ReturnsFlow(BaseFlow):
    flow_name = "returns_flow"
    value: Any = None

    async def _execute_flow_logic(self, inputs):
        step = Returns()
        type(step).value = type(self).value
        result = await step.execute({})
        return {"out": result.output_content}


class OutputsFlow(BaseFlow):
    flow_name = "outputs_flow"
    value: Any = None

    async def _execute_flow_logic(self, inputs):
        return {"out": type(self).value}


UNSTORABLE = [b"\xff\x00", {1, 2}, object(), math.nan, math.inf, "a\x00b", "\ud800", {"k": [b"x"]}]


def value_id(value: Any) -> str:
    """A test id that is the same in every process (pytest-xdist compares them): no object address."""
    return "object()" if type(value) is object else repr(value)


@pytest.mark.slow
@pytest.mark.parametrize("value", UNSTORABLE, ids=value_id)
async def test_a_step_returning_an_unstorable_value_fails_step_and_run(backend, value):
    ReturnsFlow.value = value
    with pytest.raises(FlowEngineError, match="step 'returns' returned a value that cannot be stored"):
        await ReturnsFlow().execute({})
    [run] = all_terminal()
    assert run.status == "failed" and "cannot be stored" in run.error_message
    [step] = get_engine().store.list_steps(run.id)
    assert step.status == "failed" and "step 'returns'" in step.error_message


@pytest.mark.slow
@pytest.mark.parametrize("value", UNSTORABLE, ids=value_id)
async def test_a_flow_returning_unstorable_outputs_ends_failed_not_running(backend, value):
    OutputsFlow.value = value
    with pytest.raises(FlowEngineError, match="outputs that cannot be stored"):
        await OutputsFlow().execute({})
    [run] = all_terminal()
    assert run.status == "failed" and "outputs.out" in run.error_message


class Point(BaseModel):
    x: int


async def test_what_converts_losslessly_is_stored(backend):
    import dataclasses

    @dataclasses.dataclass
    class Pair:
        a: int
        b: str

    ReturnsFlow.value = {"t": (1, 2), "m": Point(x=1), "d": Pair(1, "b"), "when": utcnow()}
    outputs = await ReturnsFlow().execute({})
    assert outputs["out"]["t"] == (1, 2)  # the caller gets what the step returned (a tuple: a list)
    [run] = all_terminal()
    [step] = get_engine().store.list_steps(run.id)
    stored = step.outputs["output_content"]
    assert stored["t"] == [1, 2] and stored["m"] == {"x": 1} and stored["d"] == {"a": 1, "b": "b"}


def deep(levels: int) -> dict[str, Any]:
    root: dict[str, Any] = {}
    node = root
    for _ in range(levels):
        node["a"] = {}
        node = node["a"]
    return root


class AnyInputs(BaseFlow):
    flow_name = "any_inputs"

    class Inputs(BaseModel):
        x: Any = None

    async def _execute_flow_logic(self, inputs):
        return {}


@pytest.mark.slow
@pytest.mark.parametrize(
    "value", [deep(1000), math.nan, "\ud800", "a\x00"], ids=["deep", "nan", "sur", "nul"]
)
@pytest.mark.parametrize("flow_cls", [AnyInputs, OutputsFlow], ids=["Inputs", "no-Inputs"])
async def test_hostile_inputs_are_an_input_validation_error_and_record_nothing(backend, value, flow_cls):
    with pytest.raises(InputValidationError):
        await flow_cls().execute({"x": value})
    with pytest.raises(InputValidationError):
        Returns.validate_inputs({"x": value})
    assert get_engine().store.list_runs() == []


# -- hooks after the fact cannot change a stored outcome -----------------------------------------
class Raising:
    def __init__(self, *hooks: str):
        self.hooks = hooks

    def _maybe(self, name: str) -> None:
        if name in self.hooks:
            raise RuntimeError(f"{name} broke")

    @hookimpl
    def after_flow(self, event):
        self._maybe("after_flow")

    @hookimpl
    def on_flow_error(self, event):
        self._maybe("on_flow_error")

    @hookimpl
    def after_step(self, event):
        self._maybe("after_step")

    @hookimpl
    def on_step_error(self, event):
        self._maybe("on_step_error")


async def test_raising_after_hooks_are_reported_and_the_outcome_stands(backend):
    get_engine().plugins.register(Raising("after_flow", "after_step"), name="raising")
    ReturnsFlow.value = "fine"
    with pytest.warns(RuntimeWarning, match="after_step hook raised RuntimeError: after_step broke"):
        outputs = await ReturnsFlow().execute({})
    assert outputs == {"out": "fine"}
    [run] = all_terminal()
    assert run.status == "completed" and run.outputs == {"out": "fine"}


async def test_a_raising_on_error_hook_does_not_replace_the_real_error(backend):
    get_engine().plugins.register(Raising("on_flow_error", "on_step_error"), name="raising")
    ReturnsFlow.value = b"bytes"
    with pytest.warns(RuntimeWarning, match="on_flow_error hook raised"):
        with pytest.raises(FlowEngineError, match="cannot be stored"):
            await ReturnsFlow().execute({})
    [run] = all_terminal()
    assert run.status == "failed"


# -- replayed steps are announced -----------------------------------------------------------------
class Flaky(BaseStep):
    fail = True

    async def run(self, inputs):
        if type(self).fail:
            raise RuntimeError("not yet")
        return "second"


class TwoSteps(BaseFlow):
    flow_name = "two_steps"

    async def _execute_flow_logic(self, inputs):
        first = await Returns().execute({})
        second = await Flaky().execute({})
        return {"a": first.output_content, "b": second.output_content}


async def test_a_resumed_run_fires_after_step_with_replayed_for_replayed_steps(backend):
    seen: list[tuple[str, bool]] = []

    class Audit:
        @hookimpl
        def after_step(self, event):
            seen.append((event.step_name, event.replayed))

    get_engine().plugins.register(Audit(), name="audit")
    Returns.value, Flaky.fail = "first", True
    flow = TwoSteps()
    with pytest.raises(RuntimeError):
        await flow.execute({})
    assert seen == [("returns", False)]
    Flaky.fail = False
    assert await TwoSteps().resume(flow.run_id) == {"a": "first", "b": "second"}
    assert seen == [("returns", False), ("returns", True), ("flaky", False)]
    all_terminal()


# -- budgets, staleness, claims -------------------------------------------------------------------
@pytest.mark.parametrize("bad", [math.nan, math.inf, -1.0])
async def test_a_budget_that_could_never_stop_a_run_is_refused(backend, bad):
    with pytest.raises(UsageError, match="max_cost"):
        await OutputsFlow().execute({}, max_cost=bad)
    assert get_engine().store.list_runs() == []


async def test_recover_with_a_threshold_below_the_heartbeat_is_refused(backend):
    from flow_engine.resume import recover

    with pytest.raises(UsageError, match="would mark live runs crashed"):
        await recover(1)


async def test_resume_claims_the_run_and_refuses_a_live_one(backend):
    from flow_engine.plugin import RunRecord

    store = get_engine().store
    live = RunRecord(flow_name="outputs_flow", status="running", started_at=utcnow(), last_heartbeat=utcnow())
    await store.create_run(live)
    with pytest.raises(UsageError, match="being executed by another process"):
        await OutputsFlow().resume(live.id)
    assert store.get_run(live.id).status == "running"  # left alone
    # a stale one is claimed and resumed, once
    await store.heartbeat(live.id, utcnow() - timedelta(hours=1))
    OutputsFlow.value = 1
    assert await OutputsFlow().resume(live.id) == {"out": 1}
    assert store.get_run(live.id).status == "completed"


async def test_two_resumes_of_a_failed_run_at_once_run_it_once(backend):
    from flow_engine.errors import RunTaken
    from flow_engine.plugin import RunRecord

    store = get_engine().store
    failed = RunRecord(flow_name="outputs_flow", status="failed", started_at=utcnow(), error_message="boom")
    await store.create_run(failed)
    OutputsFlow.value = 2
    outcomes = await asyncio.gather(
        OutputsFlow().resume(failed.id), OutputsFlow().resume(failed.id), return_exceptions=True
    )
    [won] = [o for o in outcomes if not isinstance(o, BaseException)]
    [lost] = [o for o in outcomes if isinstance(o, BaseException)]
    assert won == {"out": 2}
    # the loser read the run failed (its claim lost) or already running (the winner's): either way
    assert isinstance(lost, RunTaken) and "by another process" in str(lost)
    stored = store.get_run(failed.id)
    assert stored.status == "completed" and len(stored.flow_metadata["resumed"]) == 1


# -- a third-party LLM step sees the per-call model ----------------------------------------------
class Echo(LLMStep):
    step_type = "unstructured_llm"  # a registered type; the class is a third party's own

    class Inputs(BaseModel):
        prompt: str

    async def run(self, inputs):
        call = await complete(self.build_messages(inputs), model=self.call_model())
        return call.text  # no StepOutput built by hand


async def test_a_custom_step_gets_the_per_call_model_and_records_it(backend):
    class UsesEcho(BaseFlow):
        flow_name = "uses_echo"

        async def _execute_flow_logic(self, inputs):
            result = await Echo().execute({"prompt": "hi"}, model="offline/other")
            return {"meta": {k: result.metadata[k] for k in ("provider", "model")}}

    flow = UsesEcho()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outputs = await flow.execute({})
    assert outputs["meta"]["model"] == "offline/other"
    assert outputs["meta"]["provider"]
    [step] = get_engine().store.list_steps(flow.run_id)
    assert step.step_metadata["model"] == "offline/other"
    [request] = get_engine().store.list_llm_requests(flow_run_id=flow.run_id)
    assert request.model == "offline/other"
