"""The offline model: a litellm custom provider, deterministic, schema-valid, free, clearly labelled."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any, Literal

import pytest
from pydantic import BaseModel, Field

from flow_engine import BaseFlow, StructuredStep, UnstructuredStep, configure
from flow_engine.engine import get_engine
from flow_engine.plugin import complete
from flow_engine.plugins.offline import estimate_tokens

pytestmark = pytest.mark.usefixtures("no_network")  # 127.0.0.1 only


class Level(enum.Enum):
    BEGINNER = "beginner"
    EXPERT = "expert"


class Step_(BaseModel):
    order: int = Field(ge=1, le=20)
    text: str = Field(min_length=3, max_length=80)


class Recipe(BaseModel):
    name: str
    level: Level
    cuisine: Literal["italian", "thai", "mexican"]
    servings: int = Field(ge=1, le=12)
    rating: float = Field(ge=0, le=5)
    steps: list[Step_] = Field(min_length=2, max_length=5)
    tags: list[str] = Field(default_factory=list, max_length=3)
    nutrition: dict[str, float]
    published: datetime
    note: str | None = None


class MakeRecipe(StructuredStep):
    step_name = "make_recipe"
    Outputs = Recipe

    class Inputs(BaseModel):
        prompt: str


class Write(UnstructuredStep):
    class Inputs(BaseModel):
        prompt: str


@pytest.mark.parametrize("mode", ["auto", "native", "json", "prompt"])
async def test_schema_valid_objects_for_complex_outputs_in_every_mode(engine, mode):
    class Step(MakeRecipe):
        structured_output = mode

    result = await Step().execute({"prompt": "A quick pasta with tomatoes and basil"}, model="offline")
    recipe = result.output_content
    assert isinstance(recipe, Recipe)
    assert 2 <= len(recipe.steps) <= 5 and recipe.level in Level
    assert result.metadata["llm_calls"] == 1  # valid the first time: no re-ask
    assert result.metadata["structured_mode"] == ("native" if mode == "auto" else mode)


async def test_deterministic_and_derived_from_the_prompt(engine):
    first = await MakeRecipe().execute({"prompt": "Green curry with tofu"}, model="offline")
    second = await MakeRecipe().execute({"prompt": "Green curry with tofu"}, model="offline")
    other = await MakeRecipe().execute({"prompt": "Tacos al pastor tonight"}, model="offline")
    assert first.output_content == second.output_content != other.output_content
    assert {"Green", "curry", "tofu"} & set(first.output_content.name.split())

    text1 = await Write().execute({"prompt": "Describe the harbour at night"}, model="offline")
    text2 = await Write().execute({"prompt": "Describe the harbour at night"}, model="offline")
    assert text1.output_content == text2.output_content
    assert text1.output_content.startswith("[offline:default] ")
    assert "harbour" in text1.output_content


async def test_usage_is_estimated_cost_is_zero_provider_is_offline(engine):
    prompt = "Count these words please " * 10
    result = await Write().execute({"prompt": prompt}, model="offline")
    [record] = engine.store.list_llm_requests()
    assert record.prompt_tokens == estimate_tokens(prompt)
    assert record.completion_tokens == estimate_tokens(result.output_content)
    assert result.metadata["tokens_used"] == record.total_tokens > 0
    assert result.metadata["cost_estimate"] == 0.0 and record.cost == 0.0
    assert result.metadata["provider"] == record.provider == "offline"
    assert result.metadata["model"] == record.model == "offline/default"
    assert result.metadata["unpriced_calls"] == 0


async def test_max_tokens_bounds_the_text(engine):
    class Short(Write):
        llm_params = {"max_tokens": 4}

    result = await Short().execute(
        {"prompt": "one two three four five six seven eight nine ten"}, model="offline"
    )
    assert len(result.output_content.split()) <= 1 + 3


@pytest.mark.parametrize("name", ["offline", "offline/anything", "offline/gpt-4-pretend"])
async def test_flow_engine_model_env_var_selects_it(monkeypatch, tmp_path, recwarn, name):
    monkeypatch.setenv("FLOW_ENGINE_MODEL", name)
    configure(database_url="memory://", data_dir=tmp_path)
    result = await Write().execute({"prompt": "hello there"})
    expected = name if "/" in name else "offline/default"
    assert result.metadata["model"] == expected
    assert result.metadata["provider"] == "offline"
    assert result.output_content.startswith(f"[offline:{expected.split('/', 1)[1]}]")
    assert not [w for w in recwarn if "no model configured" in str(w.message)]  # configured: no notice


async def test_the_offline_model_ignores_the_api_base_setting(fake_openai, tmp_path):
    configure(database_url="memory://", data_dir=tmp_path, api_base=fake_openai.base_url, model="offline")
    await Write().execute({"prompt": "hi"})
    assert fake_openai.requests == []
    assert get_engine().store.list_llm_requests()[0].api_base is None


async def test_a_json_object_request_without_schema_gets_json(engine):
    call = await complete(
        [{"role": "user", "content": "anything"}], model="offline/x", response_format={"type": "json_object"}
    )
    import json

    assert json.loads(call.text) == {"text": "[offline:x] anything"}


async def test_a_whole_flow_runs_offline(engine):
    class Flow(BaseFlow):
        async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
            text = await Write().execute({"prompt": inputs["topic"]})
            recipe = await MakeRecipe().execute({"prompt": text.output_content})
            return {"recipe": recipe.output_content.model_dump(mode="json")}

    flow = Flow()
    outputs = await flow.execute({"topic": "risotto"}, model="offline")
    Recipe.model_validate(outputs["recipe"])
    run = engine.store.get_run(flow.run_id)
    assert run.status == "completed" and run.total_cost == 0.0 and run.total_tokens > 0
