"""The ``submit_metadata`` hook: plugins add entries to a background run's ``flow_metadata``."""

from __future__ import annotations

from typing import Any

from flow_engine import BaseFlow, BaseStep, hookimpl
from flow_engine.engine import get_engine


class Ok(BaseStep):
    async def run(self, inputs: Any) -> str:
        return "fine"


class Submitted(BaseFlow):
    flow_name = "submitted"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        await Ok().execute({})
        return {"done": True}


class Adds:
    @hookimpl
    def submit_metadata(self, flow_name: str) -> dict[str, Any]:
        return {"mine": {"flow": flow_name}}


class AddsNothing:
    @hookimpl
    def submit_metadata(self, flow_name: str) -> None:
        return None


async def test_entries_of_plugins_are_stored_with_the_submitted_run(engine):
    engine.plugins.register(Adds(), name="adds")
    engine.plugins.register(AddsNothing(), name="adds-nothing")
    run_id = await Submitted().submit({}, executor="local")
    meta = get_engine().store.get_run(run_id).flow_metadata
    assert meta["mine"] == {"flow": "submitted"}
    assert meta["background"]["executor"] == "local"
