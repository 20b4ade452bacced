"""The seed plan's repositories on an ORM session: by id, by user, by status, by flow name (newest first,
limit/offset), steps by run in order; create and save through the session."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from flow_engine.plugins.sql.models import FlowRunModel, FlowStepRunModel, LLMRequestModel
from flow_engine.plugins.sql.repo import FlowRunRepo, FlowStepRunRepo, LLMRequestRepo

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def session(store):  # type: ignore[no-untyped-def]
    with Session(store.engine, expire_on_commit=False) as s:
        yield s


def make_run(i: int, **fields: object) -> FlowRunModel:
    values: dict[str, object] = {
        "flow_name": "a" if i % 2 else "b",
        "status": "completed" if i % 3 else "failed",
        "inputs": {"i": i},
        "created_at": T0 + timedelta(minutes=i),
    }
    values.update(fields)
    return FlowRunModel(**values)


def test_create_and_by_id(session):
    repo = FlowRunRepo(session)
    run = repo.create(make_run(1, user_id=uuid.uuid4(), flow_metadata={"m": 1}))
    assert isinstance(run.id, uuid.UUID)  # defaults applied on flush
    session.commit()
    session.expunge_all()
    loaded = repo.by_id(run.id)
    assert loaded is not None and loaded is not run
    assert (loaded.flow_name, loaded.inputs, loaded.flow_metadata, loaded.user_id) == (
        "a",
        {"i": 1},
        {"m": 1},
        run.user_id,
    )
    assert (loaded.status, loaded.execution_mode, loaded.total_tokens, loaded.cancel_requested) == (
        "completed",
        "sync",
        0,
        False,
    )
    assert loaded.created_at == T0 + timedelta(minutes=1) and loaded.created_at.tzinfo is not None
    assert repo.by_id(uuid.uuid4()) is None


def test_save_persists_changes(session):
    repo = FlowRunRepo(session)
    run = repo.create(make_run(1))
    session.commit()
    run.status, run.outputs, run.total_cost = "completed", {"ok": True}, 0.25
    repo.save(run)
    session.commit()
    session.expunge_all()
    again = repo.by_id(run.id)
    assert (again.status, again.outputs, again.total_cost) == ("completed", {"ok": True}, 0.25)


def test_queries_are_newest_first_with_limit_and_offset(session):
    user, other = uuid.uuid4(), uuid.uuid4()
    runs = [make_run(i, user_id=user if i < 6 else other) for i in range(10)]
    session.add_all(runs)
    session.commit()
    repo = FlowRunRepo(session)

    def ids(models: list[FlowRunModel]) -> list[uuid.UUID]:
        return [m.id for m in models]

    newest = list(reversed(runs))
    completed = [r for r in newest if r.status == "completed"]
    of_b = [r for r in newest if r.flow_name == "b"]
    assert ids(repo.by_user_id(user)) == ids([r for r in newest if r.user_id == user])
    assert ids(repo.by_user_id(user, limit=2, offset=1)) == ids([r for r in newest if r.user_id == user][1:3])
    assert ids(repo.by_status("failed")) == ids([r for r in newest if r.status == "failed"])
    assert ids(repo.by_status("completed", limit=3)) == ids(completed[:3])
    assert ids(repo.by_flow_name("a")) == ids([r for r in newest if r.flow_name == "a"])
    assert ids(repo.by_flow_name("b", limit=2, offset=2)) == ids(of_b[2:4])
    assert repo.by_flow_name("nope") == [] and repo.by_user_id(uuid.uuid4()) == []


def test_steps_by_run_in_order_and_children(session):
    parent = make_run(0)
    session.add(parent)
    session.flush()
    children = [make_run(i, parent_run_id=parent.id, run_key=f"c#{i}") for i in (2, 1)]
    session.add_all(children)
    request = LLMRequestModel(call_id=uuid.uuid4(), model="offline/default", flow_run_id=parent.id, cost=None)
    session.add(request)
    session.flush()
    step_repo = FlowStepRunRepo(session)
    for order in (3, 1, 2):
        step_repo.create(
            FlowStepRunModel(
                flow_run_id=parent.id,
                step_name="s",
                step_key=f"s#{order}",
                step_type="python",
                step_order=order,
                inputs={},
                llm_request_id=request.id if order == 2 else None,
                cost_estimate=None if order == 2 else 0.0,
            )
        )
    session.commit()
    session.expunge_all()
    steps = step_repo.by_flow_run_id(parent.id)
    assert [s.step_order for s in steps] == [1, 2, 3]
    assert steps[1].llm_request_id == request.id and steps[1].cost_estimate is None
    assert step_repo.by_id(steps[0].id).step_key == "s#1"
    assert [s.step_order for s in FlowRunRepo(session).by_id(parent.id).steps] == [1, 2, 3]  # relationship
    assert [c.run_key for c in FlowRunRepo(session).children(parent.id)] == ["c#1", "c#2"]  # oldest first
    [stored] = LLMRequestRepo(session).find(flow_run_id=parent.id)
    assert stored.cost is None and stored.status == "completed"
