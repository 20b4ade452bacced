"""BaseFlow: validation before anything runs, run rows from start to end, failures, child runs, progress."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from pydantic import BaseModel, Field

from flow_engine import BaseFlow, BaseStep, InputValidationError, configure
from flow_engine.errors import FlowEngineError
from flow_engine.plugin import RunStatus


class Double(BaseStep):
    class Inputs(BaseModel):
        x: int

    async def run(self, inputs: Inputs) -> int:
        return inputs.x * 2


class Boom(BaseStep):
    async def run(self, inputs: Any) -> None:
        raise RuntimeError("the step broke")


class TwoSteps(BaseFlow):
    flow_name = "two_steps"
    total_steps = 2

    class Inputs(BaseModel):
        x: int = Field(..., ge=0)
        label: str = "n"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        first = await Double().execute({"x": inputs["x"]})
        second = await Double().execute({"x": first.output_content})
        return {"value": second.output_content, "label": inputs["label"]}


class Failing(BaseFlow):
    flow_name = "failing"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        await Double().execute({"x": 1})
        await Boom().execute({})
        return {}


async def test_successful_run_is_recorded_with_steps_and_progress(engine):
    flow = TwoSteps()
    outputs = await flow.execute({"x": 3})
    assert outputs == {"value": 12, "label": "n"}
    run = engine.store.get_run(flow.run_id)
    assert run.status == RunStatus.COMPLETED
    assert run.inputs == {"x": 3, "label": "n"}
    assert run.outputs == outputs
    assert (run.step_progress, run.total_steps, run.progress_percentage) == (2, 2, 100.0)
    assert run.started_at <= run.completed_at and run.execution_time_ms is not None
    assert run.error_message is None and run.execution_mode == "sync"
    steps = engine.store.list_steps(flow.run_id)
    assert [(s.step_key, s.step_order, s.step_type, s.status) for s in steps] == [
        ("double", 1, "python", "completed"),
        ("double#2", 2, "python", "completed"),
    ]
    assert steps[0].inputs == {"x": 3} and steps[0].outputs == {"output_content": 6}
    assert steps[1].outputs == {"output_content": 12}
    assert all(s.tokens_used == 0 and s.cost_estimate == 0 for s in steps)


async def test_invalid_inputs_name_each_field_and_write_nothing(engine):
    with pytest.raises(InputValidationError) as info:
        await TwoSteps().execute({"x": -1, "label": ["not", "a", "string"]})
    message = str(info.value)
    assert "x: Input should be greater than or equal to 0" in message
    assert "label: Input should be a valid string" in message
    assert engine.store.list_runs() == []


async def test_missing_required_input_is_named(engine):
    with pytest.raises(InputValidationError, match=r"x: Field required"):
        await TwoSteps().execute({})


async def test_failure_is_recorded_on_run_and_step(engine):
    flow = Failing()
    with pytest.raises(RuntimeError, match="the step broke"):
        await flow.execute({})
    run = engine.store.get_run(flow.run_id)
    assert run.status == RunStatus.FAILED
    assert run.error_message == "RuntimeError: the step broke"
    assert run.completed_at is not None and run.step_progress == 1
    first, second = engine.store.list_steps(flow.run_id)
    assert first.status == RunStatus.COMPLETED
    assert second.status == RunStatus.FAILED and second.error_message == "RuntimeError: the step broke"


async def test_step_with_invalid_inputs_inside_flow_is_recorded_as_failed(engine):
    class BadCall(BaseFlow):
        flow_name = "bad_call"

        async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
            await Double().execute({"x": "not a number"})
            return {}

    flow = BadCall()
    with pytest.raises(InputValidationError, match="x: Input should be a valid integer"):
        await flow.execute({})
    [step] = engine.store.list_steps(flow.run_id)
    assert step.status == RunStatus.FAILED and "x: Input should be a valid integer" in step.error_message
    assert engine.store.get_run(flow.run_id).status == RunStatus.FAILED


async def test_flow_must_return_a_dict(engine):
    class ReturnsList(BaseFlow):
        flow_name = "returns_list"

        async def _execute_flow_logic(self, inputs: dict[str, Any]) -> Any:
            return [1, 2]

    flow = ReturnsList()
    with pytest.raises(FlowEngineError, match="returned list"):
        await flow.execute({})
    assert engine.store.get_run(flow.run_id).status == RunStatus.FAILED


async def test_flow_outputs_model_is_enforced(engine):
    class Typed(BaseFlow):
        flow_name = "typed"

        class Outputs(BaseModel):
            value: int

        async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
            return {"value": "many"}

    with pytest.raises(FlowEngineError, match="invalid outputs"):
        await Typed().execute({})


async def test_flow_without_inputs_model_passes_dict_through(engine):
    class Echo(BaseFlow):
        flow_name = "echo"

        async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
            return {"got": inputs}

    assert await Echo().execute({"a": 1}) == {"got": {"a": 1}}
    with pytest.raises(InputValidationError, match="expected a dict"):
        await Echo().execute(["a"])  # type: ignore[arg-type]


async def test_child_flow_links_to_parent_and_inherits_user(engine):
    user = uuid.uuid4()

    class Parent(BaseFlow):
        flow_name = "parent"

        async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
            a = await TwoSteps().execute({"x": 1})
            b = await TwoSteps().execute({"x": 2})
            return {"a": a["value"], "b": b["value"]}

    parent = Parent()
    assert await parent.execute({}, user_id=str(user)) == {"a": 4, "b": 8}
    children = engine.store.list_runs(parent_run_id=parent.run_id)
    assert sorted(c.run_key for c in children) == ["two_steps", "two_steps#2"]
    assert all(c.user_id == user and c.status == RunStatus.COMPLETED for c in children)
    assert engine.store.get_run(parent.run_id).user_id == user
    assert engine.store.list_runs(user_id=user, flow_name="parent")[0].id == parent.run_id


async def test_invalid_user_id_is_rejected_before_the_run(engine):
    with pytest.raises(InputValidationError, match="user_id"):
        await TwoSteps().execute({"x": 1}, user_id="not-a-uuid")
    assert engine.store.list_runs() == []


async def test_gathered_steps_keep_call_order(engine):
    class Slow(BaseStep):
        class Inputs(BaseModel):
            delay: float
            tag: str

        async def run(self, inputs: Inputs) -> str:
            await asyncio.sleep(inputs.delay)
            return inputs.tag

    class Fan(BaseFlow):
        flow_name = "fan"

        async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
            results = await asyncio.gather(
                Slow().execute({"delay": 0.05, "tag": "a"}),
                Slow().execute({"delay": 0.0, "tag": "b"}),
                Slow().execute({"delay": 0.02, "tag": "c"}),
            )
            return {"tags": [r.output_content for r in results]}

    flow = Fan()
    assert await flow.execute({}) == {"tags": ["a", "b", "c"]}
    steps = engine.store.list_steps(flow.run_id)
    assert [(s.step_order, s.step_key, s.outputs["output_content"]) for s in steps] == [
        (1, "slow", "a"),
        (2, "slow#2", "b"),
        (3, "slow#3", "c"),
    ]


async def test_concurrent_flows_never_see_each_others_context(engine):
    class Tagged(BaseStep):
        class Inputs(BaseModel):
            tag: str

        async def run(self, inputs: Inputs) -> str:
            await asyncio.sleep(0.01)
            return inputs.tag

    class Worker(BaseFlow):
        flow_name = "worker"

        class Inputs(BaseModel):
            tag: str

        async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
            for _ in range(3):
                await Tagged().execute({"tag": inputs["tag"]})
            return {}

    flows = [Worker() for _ in range(20)]
    await asyncio.gather(*(f.execute({"tag": str(i)}) for i, f in enumerate(flows)))
    for i, flow in enumerate(flows):
        steps = engine.store.list_steps(flow.run_id)
        assert [s.step_order for s in steps] == [1, 2, 3]
        assert {s.inputs["tag"] for s in steps} == {str(i)}


async def test_step_outside_any_flow_runs_untracked(engine):
    result = await Double().execute({"x": 21})
    assert result.output_content == 42
    assert result.step_name == "double"
    assert result.metadata["tokens_used"] == 0 and "run_id" not in result.metadata
    assert engine.store.list_runs() == []


async def test_cancelled_flow_is_recorded_as_cancelled(engine):
    started = asyncio.Event()

    class Hang(BaseStep):
        async def run(self, inputs: Any) -> None:
            started.set()
            await asyncio.sleep(30)

    class Hanging(BaseFlow):
        flow_name = "hanging"

        async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
            await Hang().execute({})
            return {}

    flow = Hanging()
    task = asyncio.create_task(flow.execute({}))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert engine.store.get_run(flow.run_id).status == RunStatus.CANCELLED
    [step] = engine.store.list_steps(flow.run_id)
    assert step.status == RunStatus.CANCELLED


async def test_heartbeat_is_refreshed_while_running(tmp_path):
    engine = configure(database_url="memory://", data_dir=tmp_path, heartbeat_interval=0.02)

    class Sleepy(BaseStep):
        async def run(self, inputs: Any) -> None:
            await asyncio.sleep(0.15)

    class Long(BaseFlow):
        flow_name = "long"

        async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
            await Sleepy().execute({})
            return {}

    flow = Long()
    task = asyncio.create_task(flow.execute({}))
    await asyncio.sleep(0.01)
    first = engine.store.get_run(flow.run_id).last_heartbeat
    await asyncio.sleep(0.08)
    later = engine.store.get_run(flow.run_id).last_heartbeat
    await task
    assert later > first


async def test_plain_step_without_run_is_a_clear_error(engine):
    class NoRun(BaseStep):
        pass

    with pytest.raises(Exception, match="defines no 'async def run"):
        await NoRun().execute({})


async def test_step_type_from_disabled_plugin_is_refused(tmp_path):
    configure(database_url="memory://", data_dir=tmp_path, disable_plugins="python_step")
    with pytest.raises(Exception, match=r"step type 'python'.*no loaded plugin registers"):
        await Double().execute({"x": 1})
