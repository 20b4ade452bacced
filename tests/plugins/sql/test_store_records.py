"""Every field the runner writes reaches the SQL tables and comes back unchanged, on SQLite and PostgreSQL:
a successful run, a failed run, a child flow, LLM calls with known and unknown cost, and no secrets."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel
from sqlalchemy import text

from flow_engine import BaseFlow, BaseStep, UnstructuredStep, configure
from flow_engine.plugin import ModelProviderInfo, RunStatus, hookimpl
from tests.fake_openai_server import Fault, Reply

SECRET = "sk-test-secret-123456"


class Double(BaseStep):
    step_name = "double"

    class Inputs(BaseModel):
        x: int

    async def run(self, inputs: Inputs) -> dict[str, int]:
        return {"doubled": inputs.x * 2}


class Explode(BaseStep):
    step_name = "explode"

    async def run(self, inputs: Any) -> None:
        raise RuntimeError("the widget exploded")


class Ask(UnstructuredStep):
    step_name = "ask"


class Pipeline(BaseFlow):
    flow_name = "pipeline"
    total_steps = 3

    class Inputs(BaseModel):
        x: int
        fail: bool = False

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        first = await Double().execute({"x": inputs["x"]})
        answer = await Ask().execute({"prompt": f"say {first.output_content['doubled']}"})
        if inputs["fail"]:
            await Explode().execute({})
        again = await Double().execute({"x": first.output_content["doubled"]})
        return {"answer": answer.output_content, "value": again.output_content["doubled"]}


class Child(BaseFlow):
    flow_name = "child"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return (await Double().execute({"x": inputs["x"]})).output_content


class Parent(BaseFlow):
    flow_name = "parent"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        one = await Child().execute({"x": 1})
        two = await Child().execute({"x": 2})
        return {"one": one, "two": two}


def aware(value: datetime | None) -> bool:
    return value is not None and value.tzinfo is not None and value.utcoffset().total_seconds() == 0


async def test_successful_run_stores_every_field(store):
    user = uuid.uuid4()
    before = datetime.now(UTC)
    flow = Pipeline()
    outputs = await flow.execute({"x": 3}, user_id=user, metadata={"source": "test"}, model="offline/default")
    after = datetime.now(UTC)

    run = store.get_run(flow.run_id)
    assert run is not None
    assert (run.id, run.user_id, run.flow_name, run.parent_run_id, run.run_key) == (
        flow.run_id,
        user,
        "pipeline",
        None,
        None,
    )
    assert (run.status, run.execution_mode, run.current_step) == ("completed", "sync", None)
    assert (run.step_progress, run.total_steps, run.progress_percentage) == (3, 3, 100.0)
    for stamp in (run.created_at, run.started_at, run.completed_at, run.last_heartbeat):
        assert aware(stamp) and before <= stamp <= after
    assert run.started_at <= run.completed_at
    ask_tokens = store.list_llm_requests(flow_run_id=run.id)[0].total_tokens
    assert run.total_tokens == ask_tokens > 0
    assert run.total_cost == 0.0 and run.unpriced_calls == 0  # the offline model is free
    assert run.execution_time_ms is not None and run.execution_time_ms >= 0
    assert run.inputs == {"x": 3, "fail": False}
    assert run.outputs == outputs == {"answer": outputs["answer"], "value": 12}
    assert run.flow_metadata["source"] == "test"
    assert run.error_message is None

    steps = store.list_steps(run.id)
    assert [(s.step_order, s.step_key, s.step_name, s.step_type) for s in steps] == [
        (1, "double", "double", "python"),
        (2, "ask", "ask", "unstructured_llm"),
        (3, "double#2", "double", "python"),
    ]
    for step in steps:
        assert step.flow_run_id == run.id and step.status == "completed" and step.error_message is None
        assert aware(step.created_at) and aware(step.completed_at) and step.created_at <= step.completed_at
        assert step.execution_time_ms is not None and step.execution_time_ms >= 0
        assert step.step_metadata["step_key"] == step.step_key
    double, ask, double2 = steps
    assert double.inputs == {"x": 3} and double.outputs == {"output_content": {"doubled": 6}}
    assert double2.inputs == {"x": 6} and double2.outputs == {"output_content": {"doubled": 12}}
    assert (double.tokens_used, double.cost_estimate, double.llm_request_id) == (0, 0.0, None)
    assert ask.inputs == {"prompt": "say 6"} and ask.outputs == {"output_content": outputs["answer"]}
    assert ask.tokens_used == ask_tokens and ask.cost_estimate == 0.0

    [request] = store.list_llm_requests(step_run_id=ask.id)
    assert ask.llm_request_id == request.id
    assert (request.flow_run_id, request.kind, request.model, request.provider) == (
        run.id,
        "completion",
        "offline/default",
        "offline",
    )
    assert request.request_messages == [{"role": "user", "content": "say 6"}]
    assert isinstance(request.request_params, dict)
    assert request.response["choices"][0]["message"]["content"] == outputs["answer"]
    assert request.prompt_tokens + request.completion_tokens == request.total_tokens == ask_tokens
    assert (request.cost, request.attempt, request.status, request.error_message) == (
        0.0,
        1,
        "completed",
        None,
    )
    assert request.latency_ms is not None and aware(request.created_at)


async def test_failed_run_records_the_error_on_run_and_step(store):
    flow = Pipeline()
    with pytest.raises(RuntimeError, match="the widget exploded"):
        await flow.execute({"x": 1, "fail": True})
    run = store.get_run(flow.run_id)
    assert run.status == RunStatus.FAILED.value
    assert run.error_message == "RuntimeError: the widget exploded"
    assert aware(run.completed_at) and run.outputs is None
    assert run.step_progress == 2 and run.current_step == "explode"
    steps = store.list_steps(run.id)
    assert [(s.step_key, s.status) for s in steps] == [
        ("double", "completed"),
        ("ask", "completed"),
        ("explode", "failed"),
    ]
    failed = steps[-1]
    assert failed.error_message == "RuntimeError: the widget exploded"
    assert failed.outputs is None and aware(failed.completed_at)


async def test_child_flows_are_runs_with_their_parent(store):
    parent = Parent()
    assert await parent.execute({}) == {"one": {"doubled": 2}, "two": {"doubled": 4}}
    children = store.list_runs(parent_run_id=parent.run_id)
    assert sorted((c.run_key, c.outputs["doubled"]) for c in children) == [("child", 2), ("child#2", 4)]
    for child in children:
        assert child.parent_run_id == parent.run_id and child.status == "completed"
        assert child.flow_name == "child" and child.inputs["x"] in (1, 2)
        [step] = store.list_steps(child.id)
        assert step.flow_run_id == child.id
    assert store.list_steps(parent.run_id) == []  # the children's steps belong to the children
    top = store.get_run(parent.run_id)
    assert top.parent_run_id is None and top.status == "completed"


class _PricelessProvider:
    """A model provider that is not free and has no price: its calls' cost is unknown."""

    @hookimpl
    def register_model_providers(self, register: Any) -> None:
        from flow_engine.plugins.offline import make_handler

        register(ModelProviderInfo("priceless", make_handler, "unpriced test provider", free=False))


async def test_unknown_cost_is_null_never_zero(store, sql_engine):
    sql_engine.plugins.register(_PricelessProvider(), name="priceless-provider")

    class Mixed(BaseFlow):
        flow_name = "mixed"

        async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
            await Ask().execute({"prompt": "priced"}, model="offline/default")
            await Ask().execute({"prompt": "unpriced"}, model="priceless/model-x")
            return {}

    flow = Mixed()
    await flow.execute({})
    priced, unpriced = store.list_steps(flow.run_id)
    assert priced.cost_estimate == 0.0
    assert unpriced.cost_estimate is None and unpriced.tokens_used > 0
    [request] = store.list_llm_requests(step_run_id=unpriced.id)
    assert request.cost is None and request.model == "priceless/model-x"
    run = store.get_run(flow.run_id)
    assert run.unpriced_calls == 1 and run.total_cost == 0.0
    with store.engine.connect() as conn:  # NULL in the table itself, not a 0 turned into None on reading
        nulls = conn.execute(
            text("SELECT count(*) FROM llm_requests WHERE cost IS NULL AND flow_run_id = :id"),
            {"id": flow.run_id.hex if store.engine.dialect.name == "sqlite" else flow.run_id},
        ).scalar()
        step_nulls = conn.execute(
            text("SELECT count(*) FROM flow_step_runs WHERE cost_estimate IS NULL")
        ).scalar()
    assert (nulls, step_nulls) == (1, 1)


@pytest.fixture
def http_engine(db_url, tmp_path, fake_openai, no_network):  # type: ignore[no-untyped-def]
    """The engine reaching the fake OpenAI-compatible server on 127.0.0.1 with the secret key."""
    return configure(
        database_url=db_url,
        data_dir=tmp_path / "data",
        api_base=fake_openai.base_url,
        api_key=SECRET,
        max_retries=2,
        retry_initial_delay=0.01,
        retry_max_delay=0.05,
        request_timeout=5.0,
    )


class AskHTTP(UnstructuredStep):
    step_name = "ask_http"
    model = "openai/some-unpriced-model"
    llm_params = {"extra_headers": {"Authorization": f"Bearer {SECRET}"}, "temperature": 0.1}


class OverHTTP(BaseFlow):
    flow_name = "over_http"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"text": (await AskHTTP().execute({"prompt": f"my key is not {SECRET[:5]}"})).output_content}


async def test_a_model_without_a_price_is_stored_as_unknown_cost(http_engine, fake_openai):
    fake_openai.script(Reply("priced? no", usage=(7, 3)))
    flow = OverHTTP()
    await flow.execute({})
    store = http_engine.store
    [step] = store.list_steps(flow.run_id)
    [request] = store.list_llm_requests(flow_run_id=flow.run_id)
    assert (request.model, request.total_tokens, request.cost) == ("openai/some-unpriced-model", 10, None)
    assert (step.tokens_used, step.cost_estimate) == (10, None)
    run = store.get_run(flow.run_id)
    assert (run.total_tokens, run.unpriced_calls, run.total_cost) == (10, 1, 0.0)


async def test_secrets_never_reach_any_stored_row(http_engine, fake_openai):
    fake_openai.fail_next(Fault.status(500, message=f"upstream rejected key {SECRET}"))
    flow = OverHTTP()
    await flow.execute({})
    assert len(fake_openai.chat_requests) == 2  # one failed attempt, one answer
    sent = fake_openai.chat_requests[-1].headers
    assert SECRET in " ".join(sent.values())  # the key really was used...
    store = http_engine.store
    failed, answered = store.list_llm_requests(flow_run_id=flow.run_id)
    assert (failed.status, failed.attempt, answered.status, answered.attempt) == ("failed", 1, "completed", 2)
    assert "upstream rejected key" in failed.error_message
    assert answered.api_base == fake_openai.base_url and answered.request_params == {
        "temperature": 0.1,
        "max_tokens": 2048,
    }
    with store.engine.connect() as conn:  # ...and no column of any row holds it
        for table in ("flow_runs", "flow_step_runs", "llm_requests"):
            rows = conn.execute(text(f"SELECT * FROM {table}")).all()
            assert rows, table
            for row in rows:
                for column, value in row._mapping.items():
                    assert SECRET not in str(value), f"{table}.{column} holds the API key"
