"""Helpers of the pytest plugin's own tests, which run users' test files inline with pytester."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from flow_engine import BaseFlow, StructuredStep, UnstructuredStep
from flow_engine.llm.hook import call_plugins
from flow_engine.testing import ScriptedModel, cassette, load_run, temporary_engine
from flow_engine.testing.scripted_model import RouteToOffline


class _Summary(BaseModel):
    title: str


class _Extract(UnstructuredStep):
    step_name = "warm_extract"
    model = "openai/gpt-4o-mini"

    class Inputs(BaseModel):
        prompt: str


class _Summarize(StructuredStep):
    step_name = "warm_summarize"
    Outputs = _Summary

    class Inputs(BaseModel):
        prompt: str


class _WarmUp(BaseFlow):
    flow_name = "warm_up"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        text = (await _Extract().execute({"prompt": "warm"})).output_content
        return {"title": (await _Summarize().execute({"prompt": text})).output_content.title}


def _warm_up(folder: Path) -> None:
    """What the inline runs do (scripted, offline and cassette runs on SQLite), once in this process."""
    with temporary_engine(folder):
        script = ScriptedModel().queue("facts", {"title": "t"})
        with script.installed():
            flow = _WarmUp()
            asyncio.run(flow.execute({}))
        load_run(flow)
        for mode in ("record", "replay"):
            with call_plugins(RouteToOffline()), cassette(folder / "warm.json", mode):  # type: ignore[arg-type]
                asyncio.run(_WarmUp().execute({}))


@pytest.fixture(scope="session")
def warmed_up(tmp_path_factory: pytest.TempPathFactory) -> None:
    """pytester drops every module first imported during an inline run (and restores sys.meta_path).
    The engine imports much lazily, on the first LLM call or database write: litellm (the engine keeps
    the dropped module object), SQLAlchemy's compiled parts, the ``importlib_metadata`` backport (which
    deletes the stdlib's distribution finder for its own, then removed: no package metadata is found any
    more). So the same work is done once in this process before any inline run."""
    _warm_up(tmp_path_factory.mktemp("warm-up"))
