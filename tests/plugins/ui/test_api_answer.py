"""``POST /api/runs/{id}/answer``: a program answers a waiting run, with the rules of the page's form
and ``flow respond`` (the schema check, the one answer, nothing written on a refusal)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from flow_engine.engine import get_engine
from flow_engine.errors import RunWaiting
from flow_engine.storage import RunFilter

from .conftest import make_client
from .flows import ReviewFlow, ReviewParent
from .history import History

REVIEW = {"approved": True, "level": "high", "score": 4, "tags": ["short"]}


def waiting(flow: Any, tmp_path: Path, name: str) -> Any:
    markers = tmp_path / "markers"
    markers.mkdir()
    with pytest.raises(RunWaiting):
        asyncio.run(flow.execute({"marker_dir": str(markers)}))
    [run] = get_engine().store.find_runs(RunFilter(flow_name=name))
    assert run.status == "waiting"
    return run


def completed(run_id: Any) -> Any:
    store = get_engine().store
    deadline = time.monotonic() + 20
    while store.get_run(run_id).status != "completed" and time.monotonic() < deadline:
        time.sleep(0.05)
    return store.get_run(run_id)


def still_waiting(run_id: Any) -> bool:
    store = get_engine().store
    [wait] = [s for s in store.list_steps(run_id) if s.step_type == "human_input"]
    return store.get_run(run_id).status == "waiting" and wait.status == "waiting" and wait.outputs is None


def test_a_program_answers_a_waiting_run_and_it_goes_on(history: History, tmp_path: Path) -> None:
    run = waiting(ReviewFlow(), tmp_path, "ui_review")
    with make_client() as client:
        answered = client.post(
            f"/api/runs/{run.id.hex[:8]}/answer", json={"name": "review", "answer": REVIEW}
        )
        assert answered.status_code == 200, answered.text
        assert answered.json() == {"run_id": str(run.id), "name": "review", "status": "answered"}
        done = completed(run.id)
        assert done.status == "completed", done.error_message
        assert done.outputs == {"count": 1, "review": {**REVIEW, "comment": ""}}
        assert (tmp_path / "markers" / "count-runs").read_text() == "1"  # replayed, not run again
        again = client.post(f"/api/runs/{run.id}/answer", json={"name": "review", "answer": REVIEW})
    assert again.status_code == 409 and "not waiting for input (it is completed)" in again.json()["error"]


def test_without_a_name_the_wait_the_run_is_at_is_answered_through_its_child(
    history: History, tmp_path: Path
) -> None:
    root = waiting(ReviewParent(), tmp_path, "ui_review_parent")
    with make_client() as client:
        answered = client.post(
            f"/api/runs/{root.id}/answer", json={"answer": {"approved": False, "level": "low"}}
        )
        assert answered.status_code == 200, answered.text
        assert answered.json()["name"] == "review"
        done = completed(root.id)
    assert done.status == "completed", done.error_message
    assert done.outputs["child"]["review"]["approved"] is False


def test_an_invalid_answer_names_every_bad_field_and_writes_nothing(history: History, tmp_path: Path) -> None:
    run = waiting(ReviewFlow(), tmp_path, "ui_review")
    with make_client() as client:
        refused = client.post(
            f"/api/runs/{run.id}/answer",
            json={"name": "review", "answer": {"approved": "yes", "score": "many"}},
        )
        assert refused.status_code == 400
        problems = {tuple(p["loc"]): p["msg"] for p in refused.json()["problems"]}
        assert problems[()] == "'level' is a required property"
        assert "is not of type 'boolean'" in problems[("approved",)]
        assert "'many' is not valid" in problems[("score",)]
        assert "invalid inputs for the answer to 'review'" in refused.json()["error"]
        wrong_name = client.post(f"/api/runs/{run.id}/answer", json={"name": "approve", "answer": REVIEW})
        assert wrong_name.status_code == 409
        assert "waiting for input 'review', not 'approve'" in wrong_name.json()["error"]
    assert still_waiting(run.id)


@pytest.mark.parametrize(
    ("body", "headers", "status", "says"),
    [
        ('{"name": "review", "answer": {}}', {"content-type": "text/plain"}, 415, "application/json"),
        ("name=review", {"content-type": "application/x-www-form-urlencoded"}, 415, "application/json"),
        ("{not json", {"content-type": "application/json"}, 400, "not JSON"),
        ('{"name": "review", "answer": [1]}', {"content-type": "application/json"}, 400, '"answer": {'),
        ('{"name": 3, "answer": {}}', {"content-type": "application/json"}, 400, '"name": WAIT'),
        ('"review"', {"content-type": "application/json"}, 400, '"answer": {'),
    ],
    ids=["text/plain", "a form", "not JSON", "answer not an object", "name not text", "not an object"],
)
def test_a_body_that_is_not_a_json_answer_is_refused_before_anything_is_read(
    history: History, tmp_path: Path, body: str, headers: dict[str, str], status: int, says: str
) -> None:
    run = waiting(ReviewFlow(), tmp_path, "ui_review")
    with make_client() as client:
        refused = client.post(f"/api/runs/{run.id}/answer", content=body, headers=headers)
    assert refused.status_code == status and says in refused.json()["error"]
    assert still_waiting(run.id)


def test_no_answer_to_an_unknown_run_a_run_not_waiting_or_a_read_only_viewer(
    history: History, tmp_path: Path
) -> None:
    with make_client() as client:
        unknown = client.post("/api/runs/00000000-0000-4000-8000-000000000000/answer", json={"answer": {}})
        assert unknown.status_code == 404 and "no run" in unknown.json()["error"]
        no_id = client.post("/api/runs/not-a-run/answer", json={"answer": {}})  # the request is wrong
        assert no_id.status_code == 400 and "is not a run id" in no_id.json()["error"]
        finished = client.post(f"/api/runs/{history.ids['done']}/answer", json={"answer": {}})
        assert finished.status_code == 409 and "not waiting for input" in finished.json()["error"]
    run = waiting(ReviewFlow(), tmp_path, "ui_review")
    with make_client(read_only=True) as client:
        refused = client.post(f"/api/runs/{run.id}/answer", json={"name": "review", "answer": REVIEW})
    assert refused.status_code == 403 and "read-only" in refused.json()["error"]
    assert still_waiting(run.id)
