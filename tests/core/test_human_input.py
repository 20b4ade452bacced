"""Waiting for a person (``wait_for_input``, ``respond_to_run``) through the fake OpenAI server, which
counts the requests: the run waits, the answer continues it in place with no repeated LLM call;
invalid answers, a wrong name, a second answer and a passed deadline change nothing or fail the run
as documented."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from pydantic import BaseModel

from flow_engine import BaseFlow, RunWaiting, UnstructuredStep, respond_to_run
from flow_engine.engine import get_engine
from flow_engine.errors import FlowEngineError, InputValidationError, UsageError
from flow_engine.plugin import StepRecord
from flow_engine.respond import expire_waits, validate_answer
from tests.fake_openai_server import use_fake_openai


class Write(UnstructuredStep):
    step_name = "write"

    class Inputs(BaseModel):
        prompt: str


class Approval(BaseModel):
    approved: bool
    note: str = ""


class Publish(BaseFlow):
    flow_name = "hitl_publish"
    model = "openai/gpt-4o-mini"
    deadline: float | None = None

    class Inputs(BaseModel):
        topic: str

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        draft = (await Write().execute({"prompt": f"draft on {inputs['topic']}"})).output_content
        answer = await self.wait_for_input(
            "approve", Approval, prompt="Publish this draft?", timeout=self.deadline
        )
        if not answer.approved:
            return {"published": None, "note": answer.note}
        final = (await Write().execute({"prompt": f"final of: {draft[:30]} ({answer.note})"})).output_content
        return {"published": final, "note": answer.note}


class Hasty(Publish):
    flow_name = "hitl_hasty"
    deadline = 0.05


@pytest.fixture
def llm(fake_openai, tmp_path):
    use_fake_openai(fake_openai.base_url, tmp_path)
    return fake_openai


def rows(run_id: Any) -> list[str]:
    store = get_engine().store
    return [store.get_run(run_id).model_dump_json(), *(s.model_dump_json() for s in store.list_steps(run_id))]


async def start_waiting(flow: BaseFlow) -> RunWaiting:
    with pytest.raises(RunWaiting) as info:
        await flow.execute({"topic": "tides"})
    return info.value


async def test_a_waiting_run_is_answered_and_goes_on_without_repeating_a_call(llm):
    flow = Publish()
    waiting = await start_waiting(flow)
    assert (waiting.run_id, waiting.name, waiting.prompt) == (flow.run_id, "approve", "Publish this draft?")
    assert set(waiting.schema["properties"]) == {"approved", "note"}
    store = get_engine().store
    run = store.get_run(flow.run_id)
    assert (run.status, run.completed_at, run.current_step, run.error_message) == (
        "waiting",
        None,
        "approve",
        None,
    )
    [draft, wait] = store.list_steps(flow.run_id)
    assert (draft.status, wait.status, wait.step_type) == ("completed", "waiting", "human_input")
    assert wait.inputs["prompt"] == "Publish this draft?" and wait.inputs["deadline"] is None
    assert len(llm.chat_requests) == 1

    outputs = await respond_to_run(str(flow.run_id)[:8], "approve", {"approved": True, "note": "ship it"})

    assert outputs["note"] == "ship it" and outputs["published"].startswith("fake answer to: final of:")
    prompts = [r.text for r in llm.chat_requests]
    assert len(prompts) == 2 and prompts[0] == "draft on tides"  # the draft was not written twice
    run = store.get_run(flow.run_id)
    assert run.status == "completed" and run.outputs == outputs
    steps = store.list_steps(flow.run_id)
    assert [(s.step_key, s.status) for s in steps] == [
        ("write", "completed"),
        ("approve", "completed"),
        ("write#2", "completed"),
    ]
    assert steps[1].outputs == {"output_content": {"approved": True, "note": "ship it"}}


async def test_bad_answers_change_nothing_and_a_run_is_answered_once(llm):
    flow = Publish()
    await start_waiting(flow)
    before = rows(flow.run_id)
    with pytest.raises(InputValidationError, match="approved"):
        await respond_to_run(flow.run_id, "approve", {"note": "no decision"})
    with pytest.raises(InputValidationError, match="approved"):
        await respond_to_run(flow.run_id, "approve", {"approved": "maybe"})
    with pytest.raises(UsageError, match="waiting for input 'approve', not 'review'"):
        await respond_to_run(flow.run_id, "review", {"approved": True})
    assert rows(flow.run_id) == before  # still waiting, nothing written

    first, second = await asyncio.gather(
        respond_to_run(flow.run_id, "approve", {"approved": False, "note": "no"}),
        respond_to_run(flow.run_id, "approve", {"approved": True}),
        return_exceptions=True,
    )
    outcomes = sorted([type(first).__name__, type(second).__name__])
    assert outcomes == ["AnswerRefused", "dict"], (first, second)  # exactly one answer counts (exit 2)
    with pytest.raises(UsageError, match="is not waiting for input"):
        await respond_to_run(flow.run_id, "approve", {"approved": True})
    winner = first if isinstance(first, dict) else second
    said_no = winner["published"] is None
    assert len(llm.chat_requests) == (1 if said_no else 2)  # the draft, then the final only on a yes


async def test_a_passed_deadline_fails_the_run(llm):
    late, expired = Hasty(), Hasty()
    await start_waiting(late)
    await start_waiting(expired)
    await asyncio.sleep(0.1)
    with pytest.raises(FlowEngineError, match="passed its deadline"):
        await respond_to_run(late.run_id, "approve", {"approved": True})
    assert await expire_waits() == [expired.run_id]  # flow recover does this
    store = get_engine().store
    for flow in (late, expired):
        run = store.get_run(flow.run_id)
        assert run.status == "failed" and "no answer to 'approve' before its deadline" in run.error_message
        assert store.list_steps(flow.run_id)[1].status == "failed"
    assert len(llm.chat_requests) == 2  # the two drafts


def wait_step(model: type[BaseModel]) -> StepRecord:
    return StepRecord(
        flow_run_id=uuid.uuid4(),
        step_name="approve",
        step_key="approve",
        step_type="human_input",
        step_order=1,
        status="waiting",
        inputs={"prompt": None, "schema": model.model_json_schema(), "deadline": None},
    )


class Strict(BaseModel, extra="forbid"):
    approved: bool
    note: str = ""


class Open(BaseModel, extra="allow"):
    approved: bool


def test_an_answer_is_refused_for_unknown_fields_and_what_no_database_can_store():
    for model in (Approval, Strict):  # pydantic would ignore the typo (or say only "not permitted")
        with pytest.raises(InputValidationError) as info:
            validate_answer(wait_step(model), {"approved": True, "nte": "x", "zzz": 1})
        assert info.value.errors == [
            {"loc": ("nte",), "msg": "not a field of the answer; did you mean 'note'?"},
            {"loc": ("zzz",), "msg": "not a field of the answer; its fields are: approved, note"},
        ]
    assert validate_answer(wait_step(Open), {"approved": True, "more": 1}) == {"approved": True, "more": 1}
    for text, why in (("a\x00", "NUL character"), ("a\ud800", "lone surrogate")):
        with pytest.raises(InputValidationError, match=why) as info:
            validate_answer(wait_step(Approval), {"approved": True, "note": text})
        assert [e["loc"] for e in info.value.errors] == [("note",)]
    with pytest.raises(InputValidationError) as info:
        validate_answer(wait_step(Approval), {"approved": True, "\ud800": 1})
    assert "'\\ud800': not a field of the answer" in str(info.value)  # escaped, printable
