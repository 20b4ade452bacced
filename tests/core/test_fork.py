"""Forking a run from a step (``flow_engine.fork``, ``flow fork``): through the fake OpenAI server,
which counts the requests, exactly the steps from the fork point call the model again; the steps
before it, and a child run before it, are reused; the original run's rows do not change."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from flow_engine import BaseFlow, UnstructuredStep, fork_run
from flow_engine.engine import get_engine
from flow_engine.errors import InputValidationError, UsageError
from flow_engine.fork import fork_points
from tests.fake_openai_server import use_fake_openai


class Ask(UnstructuredStep):
    step_name = "ask"

    class Inputs(BaseModel):
        prompt: str


class Note(BaseFlow):
    flow_name = "fork_note"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"note": (await Ask().execute({"prompt": f"note on {inputs['topic']}"})).output_content}


class Chain(BaseFlow):
    """ask (outline) -> child flow (note) -> ask#2 (draft) -> ask#3 (polish)."""

    flow_name = "fork_chain"
    model = "openai/gpt-4o-mini"

    class Inputs(BaseModel):
        topic: str
        tone: str = "plain"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        outline = (await Ask().execute({"prompt": f"outline {inputs['topic']}"})).output_content
        note = (await Note().execute({"topic": inputs["topic"]}))["note"]
        draft = (
            await Ask().execute({"prompt": f"draft in a {inputs['tone']} tone from: {outline}"})
        ).output_content
        polished = (await Ask().execute({"prompt": f"polish: {draft[:60]}"})).output_content
        return {"outline": outline, "note": note, "text": polished}


@pytest.fixture
def llm(fake_openai, tmp_path):
    use_fake_openai(fake_openai.base_url, tmp_path)
    return fake_openai


def rows_of(run_id: Any) -> list[str]:
    """Every stored row of a run and its child runs, as JSON: what must not change."""
    store = get_engine().store
    runs = [store.get_run(run_id), *store.list_runs(parent_run_id=run_id)]
    found = [r.model_dump_json() for r in runs]
    for run in runs:
        found += [s.model_dump_json() for s in store.list_steps(run.id)]
        found += [q.model_dump_json() for q in store.list_llm_requests(flow_run_id=run.id)]
    return found


async def test_a_fork_reuses_the_steps_before_its_point_and_runs_the_rest_live(llm):
    original = Chain()
    before_outputs = await original.execute({"topic": "rivers"})
    assert len(llm.chat_requests) == 4
    snapshot = rows_of(original.run_id)

    outputs = await fork_run(original.run_id, "ask#2", inputs={"tone": "playful"})

    live = [r.text for r in llm.chat_requests[4:]]
    assert len(live) == 2  # draft and polish: not the outline, not the child flow's note
    assert live[0].startswith("draft in a playful tone from: ")
    assert before_outputs["outline"] in live[0]  # the reused outline fed the live step
    assert outputs["outline"] == before_outputs["outline"] and outputs["note"] == before_outputs["note"]
    assert outputs["text"] != before_outputs["text"]
    assert rows_of(original.run_id) == snapshot  # the original, byte for byte

    store = get_engine().store
    fork = next(r for r in store.list_runs(flow_name="fork_chain") if r.id != original.run_id)
    assert fork.status == "completed" and fork.parent_run_id is None
    assert fork.inputs == {"topic": "rivers", "tone": "playful"}
    link = fork.flow_metadata["forked_from"]
    assert (link["run_id"], link["step_key"], link["changed_inputs"]) == (
        str(original.run_id),
        "ask#2",
        ["tone"],
    )
    steps = store.list_steps(fork.id)
    assert [(s.step_key, s.status) for s in steps] == [
        ("ask", "completed"),
        ("ask#2", "completed"),
        ("ask#3", "completed"),
    ]
    assert len(store.list_llm_requests(flow_run_id=fork.id)) == 2  # what the fork itself paid for
    [child] = store.list_runs(parent_run_id=fork.id)
    assert child.flow_metadata["copied_from"] and child.outputs == {"note": before_outputs["note"]}
    assert fork.total_tokens == sum(q.total_tokens for q in store.list_llm_requests(flow_run_id=fork.id))


async def test_with_a_model_only_the_live_steps_use_it(llm):
    original = Chain()
    await original.execute({"topic": "tides"})
    await fork_run(str(original.run_id)[:8], "ask#3", model="openai/gpt-4.1-mini")
    models = [r.body["model"] for r in llm.chat_requests]
    assert models == ["gpt-4o-mini"] * 4 + ["gpt-4.1-mini"]  # one live step, on the new model


async def test_mistakes_are_refused_before_anything_is_written(llm):
    original = Chain()
    await original.execute({"topic": "dunes"})
    store = get_engine().store
    count = len(store.list_runs(limit=1000))

    with pytest.raises(UsageError, match=r"has no step 'polish'; its steps: ask, ask#2, ask#3"):
        await fork_run(original.run_id, "polish")
    with pytest.raises(InputValidationError, match="topic"):
        await fork_run(original.run_id, "ask#2", inputs={"topic": None})
    [child] = store.list_runs(parent_run_id=original.run_id)
    with pytest.raises(UsageError, match="is a child of run"):
        await fork_run(child.id, "ask")
    assert len(store.list_runs(limit=1000)) == count
    assert [s.step_key for s in fork_points(original.run_id)] == ["ask", "ask#2", "ask#3"]
