"""The step runner's records: what a step's caller does with its result never changes what was stored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flow_engine import BaseFlow, BaseStep
from flow_engine.engine import Engine
from flow_engine.plugin import StepOutput


class Plain(BaseStep):
    async def run(self, inputs: Any) -> str:
        return "done"


class WithExtras(BaseStep):
    """A step type's extras may be anything; they are stored as JSON."""

    async def run(self, inputs: Any) -> StepOutput:
        return StepOutput(content="done", extra={"where": Path("/tmp/x"), "tags": ("a", "b")})


class MutatesItsResults(BaseFlow):
    flow_name = "mutates_its_results"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        for step in (Plain(), WithExtras()):
            result = await step.execute({})
            result.metadata["added_by_the_caller"] = True
            result.metadata["tokens_used"] = 999
        return {}


@pytest.mark.parametrize("database", ["memory://", "sqlite"])
async def test_changing_a_result_s_metadata_leaves_the_stored_step_as_it_was(
    database: str, tmp_path: Path, engine: Engine
) -> None:
    from flow_engine import configure

    url = database if database == "memory://" else f"sqlite:///{tmp_path / 'runner.db'}"
    store = configure(database_url=url, model="offline").store
    flow = MutatesItsResults()
    await flow.execute({})
    plain, extras = store.list_steps(flow.run_id)
    for step in (plain, extras):
        assert "added_by_the_caller" not in step.step_metadata
        assert step.step_metadata["tokens_used"] == 0
        assert step.step_metadata["step_key"] == step.step_key
        assert step.step_metadata["run_id"] == str(flow.run_id)
    assert extras.step_metadata["where"] == "/tmp/x"  # JSON: the path as text, the tuple as a list
    assert extras.step_metadata["tags"] == ["a", "b"]


class Child(BaseFlow):
    flow_name = "child"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        result = await Plain().execute({})
        return {"metadata": result.metadata}


class Parent(BaseFlow):
    flow_name = "parent"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        first = await Plain().execute({})
        child = Child()
        inner = await child.execute({})
        second = await Plain().execute({})
        return {
            "first": first.metadata,
            "inner": inner["metadata"],
            "second": second.metadata,
            "child": child.run_id,
        }


async def test_a_step_s_metadata_names_its_own_run_and_place(engine: Engine) -> None:
    parent = Parent()
    outputs = await parent.execute({})
    assert outputs["first"]["run_id"] == outputs["second"]["run_id"] == str(parent.run_id)
    assert outputs["inner"]["run_id"] == str(outputs["child"]) != str(parent.run_id)
    assert (outputs["first"]["step_key"], outputs["first"]["step_order"]) == ("plain", 1)
    assert (outputs["second"]["step_key"], outputs["second"]["step_order"]) == ("plain#2", 2)
    assert (outputs["inner"]["step_key"], outputs["inner"]["step_order"]) == ("plain", 1)
