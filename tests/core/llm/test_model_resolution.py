"""Which model a step calls: per-call override > step class > run-level > FLOW_ENGINE_MODEL > offline."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from flow_engine import BaseFlow, UnstructuredStep, configure


class Plain(UnstructuredStep):
    class Inputs(BaseModel):
        prompt: str


class Pinned(Plain):
    model = "offline/step"


class Probe(BaseFlow):
    flow_name = "probe"

    def __init__(self, step: type[UnstructuredStep], override: str | None = None):
        super().__init__()
        self.step, self.override = step, override

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        result = await self.step().execute({"prompt": "p"}, model=self.override)
        return {"model": result.metadata["model"]}


def setup(tmp_path: Any, monkeypatch: pytest.MonkeyPatch, env_model: str | None) -> None:
    if env_model:
        monkeypatch.setenv("FLOW_ENGINE_MODEL", env_model)
    configure(database_url="memory://", data_dir=tmp_path)


@pytest.mark.parametrize(
    ("override", "step", "run_model", "env_model", "expected"),
    [
        ("offline/call", Pinned, "offline/run", "offline/env", "offline/call"),
        (None, Pinned, "offline/run", "offline/env", "offline/step"),
        (None, Plain, "offline/run", "offline/env", "offline/run"),
        (None, Plain, None, "offline/env", "offline/env"),
        (None, Plain, None, None, "offline/default"),
        ("offline", Plain, None, None, "offline/default"),
    ],
)
async def test_resolution_order(tmp_path, monkeypatch, override, step, run_model, env_model, expected):
    setup(tmp_path, monkeypatch, env_model)
    outputs = await Probe(step, override).execute({}, model=run_model)
    assert outputs == {"model": expected}


async def test_the_flow_class_model_is_a_run_level_default(tmp_path, monkeypatch):
    setup(tmp_path, monkeypatch, "offline/env")

    class WithModel(Probe):
        model = "offline/flowclass"

    assert await WithModel(Plain).execute({}) == {"model": "offline/flowclass"}
    assert await WithModel(Plain).execute({}, model="offline/run") == {"model": "offline/run"}


async def test_a_child_flow_inherits_the_run_level_model(tmp_path, monkeypatch):
    setup(tmp_path, monkeypatch, None)

    class Parent(BaseFlow):
        async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
            return await Probe(Plain).execute({})

    assert await Parent().execute({}, model="offline/parent") == {"model": "offline/parent"}


async def test_a_step_outside_any_flow_uses_the_setting(tmp_path, monkeypatch):
    setup(tmp_path, monkeypatch, "offline/env")
    assert (await Plain().execute({"prompt": "p"})).metadata["model"] == "offline/env"
    assert (await Plain().execute({"prompt": "p"}, model="offline/call")).metadata["model"] == "offline/call"


async def test_falling_back_to_offline_says_so_once_as_a_warning(tmp_path, monkeypatch, capsys, recwarn):
    from flow_engine.engine import OfflineModelWarning

    setup(tmp_path, monkeypatch, None)
    await Plain().execute({"prompt": "p"})
    await Plain().execute({"prompt": "p"})
    notices = [str(w.message) for w in recwarn if issubclass(w.category, OfflineModelWarning)]
    assert len(notices) == 1
    assert "no model configured (FLOW_ENGINE_MODEL)" in notices[0]
    assert capsys.readouterr().out == ""  # never printed by the library


async def test_no_notice_when_a_model_is_chosen(tmp_path, monkeypatch, capsys):
    setup(tmp_path, monkeypatch, None)
    await Pinned().execute({"prompt": "p"})
    await Probe(Plain).execute({}, model="offline/run")
    assert capsys.readouterr().err == ""
