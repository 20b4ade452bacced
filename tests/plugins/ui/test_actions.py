"""Cancel, resume and answer a waiting run from the page (POST, CSRF-protected), with the rules of the
CLI; ``--read-only``."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import pytest

from flow_engine.engine import get_engine
from flow_engine.errors import RunWaiting
from flow_engine.storage import RunFilter, utcnow

from .conftest import make_client
from .flows import FlakyFlow, ReviewFlow, ReviewParent
from .history import History


def csrf_of(client: Any, run_id: object) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', client.get(f"/runs/{run_id}").text)
    assert found, "the page has no action form"
    return found.group(1)


def test_cancel_needs_the_csrf_token(client: Any, history: History) -> None:
    run_id = history.ids["stale"]
    for form in ({}, {"csrf": "forged"}):
        response = client.post(f"/runs/{run_id}/cancel", data=form, follow_redirects=False)
        assert response.status_code == 403 and "CSRF" in response.text
    assert get_engine().store.get_run(run_id).status == "running"  # untouched


def test_cancel_a_run_nobody_executes(client: Any, history: History) -> None:
    run_id = history.ids["stale"]  # its process is gone: cancelled at once, like `flow cancel`
    response = client.post(
        f"/runs/{run_id}/cancel", data={"csrf": csrf_of(client, run_id)}, follow_redirects=False
    )
    assert response.status_code == 303 and response.headers["location"] == f"/runs/{run_id}?notice=cancelled"
    assert get_engine().store.get_run(run_id).status == "cancelled"
    assert "Run cancelled." in client.get(response.headers["location"]).text


def test_cancel_a_live_run_asks_it_to_stop(client: Any, history: History) -> None:
    run_id = history.ids["live"]
    response = client.post(
        f"/runs/{run_id}/cancel", data={"csrf": csrf_of(client, run_id)}, follow_redirects=False
    )
    assert response.headers["location"].endswith("notice=cancel-requested")
    store = get_engine().store
    assert asyncio.run(store.heartbeat(run_id, utcnow())) is True  # what its process reads next


def test_cancel_a_finished_run_is_refused(client: Any, history: History) -> None:
    run_id = history.ids["done"]
    csrf = re.search(
        r'value="([^"]+)"', client.get(f"/runs/{history.ids['failed']}").text.split('name="csrf"')[1]
    )
    assert csrf
    response = client.post(f"/runs/{run_id}/cancel", data={"csrf": csrf.group(1)})
    assert response.status_code == 409 and "already ended (completed)" in response.text


def test_resume_refused_for_a_child_and_a_completed_run(client: Any, history: History) -> None:
    csrf = csrf_of(client, history.ids["failed"])
    child = client.post(f"/runs/{history.ids['grandchild']}/resume", data={"csrf": csrf})
    assert child.status_code == 409 and "child run" in child.text
    done = client.post(f"/runs/{history.ids['done']}/resume", data={"csrf": csrf})
    assert done.status_code == 409 and "already completed" in done.text
    code = client.post(f"/runs/{history.ids['failed']}/resume", data={"csrf": csrf})
    assert code.status_code == 409 and "cannot find the code of flow" in code.text  # flow_ref x:Y


def test_read_only_has_no_actions(history: History) -> None:
    with make_client(read_only=True) as client:
        page = client.get(f"/runs/{history.ids['failed']}").text
        assert 'id="resume"' not in page and 'name="csrf"' not in page and "read-only" in page
        response = client.post(f"/runs/{history.ids['stale']}/cancel", data={"csrf": "x"})
        assert response.status_code == 403
    assert get_engine().store.get_run(history.ids["stale"]).status == "running"


def test_resume_a_failed_run_from_the_page(history: History, tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    with pytest.raises(Exception, match="not fixed yet"):
        asyncio.run(FlakyFlow().execute({"marker_dir": str(markers)}))
    store = get_engine().store
    run = store.find_runs(RunFilter(flow_name="ui_flaky"))[0]
    assert run.status == "failed"
    (markers / "fixed").touch()
    with make_client() as client:
        page = client.get(f"/runs/{run.id}").text
        assert 'id="resume"' in page
        response = client.post(
            f"/runs/{run.id}/resume", data={"csrf": csrf_of(client, run.id)}, follow_redirects=False
        )
        assert response.status_code == 303 and response.headers["location"].endswith("notice=resuming")
        deadline = time.monotonic() + 20
        while store.get_run(run.id).status != "completed" and time.monotonic() < deadline:
            time.sleep(0.05)
    resumed = store.get_run(run.id)
    assert resumed.status == "completed" and resumed.outputs == {"count": 1, "fragile": "fixed"}
    assert (markers / "count-runs").read_text() == "1"  # the completed step was not run again


def _waiting_review(tmp_path: Path) -> Any:
    markers = tmp_path / "markers"
    markers.mkdir()
    with pytest.raises(RunWaiting):
        asyncio.run(ReviewFlow().execute({"marker_dir": str(markers)}))
    [run] = get_engine().store.find_runs(RunFilter(flow_name="ui_review"))
    assert run.status == "waiting"
    return run


def _form(client: Any, run_id: object, **fields: str) -> dict[str, str]:
    return {"csrf": csrf_of(client, run_id), "wait": "review", **{f"f.{k}": v for k, v in fields.items()}}


def test_a_waiting_run_shows_its_question_and_a_form_drawn_from_the_answers_schema(
    history: History, tmp_path: Path
) -> None:
    run = _waiting_review(tmp_path)
    with make_client() as client:
        page = client.get(f"/runs/{run.id}").text
    assert 'waiting for input: <span class="mono">review</span>' in page
    assert "Approve the &lt;b&gt;draft&lt;/b&gt;?" in page  # escaped like everything from the store
    assert re.search(r'<input type="checkbox" name="f\.approved" value="1" id="f-approved"\s*>', page)
    level = re.search(r'<select name="f\.level".*?</select>', page, re.S)
    assert level and re.findall(r'<option value="([^"]*)"', level.group(0)) == ["", "low", "high"]
    assert "choose…" in level.group(0)  # required: a person picks one, none is picked for them
    assert '<input type="number" step="1" name="f.score"' in page and "1 to 5" in page
    assert '<textarea name="f.comment"' in page
    assert re.search(r'f-tags">Tags <span class="muted">\(JSON\)</span>', page)
    assert 'name="f.tags" id="f-tags" rows="3">[]</textarea>' in page  # its default, as JSON
    assert f"flow respond {run.id} review --input KEY=VALUE" in page
    with make_client(read_only=True) as client:
        page = client.get(f"/runs/{run.id}").text
    assert "Approve the &lt;b&gt;draft&lt;/b&gt;?" in page and 'id="answer-form"' not in page
    assert f"flow respond {run.id} review" in page


def test_an_invalid_answer_is_refused_with_every_bad_field_named_and_nothing_written(
    history: History, tmp_path: Path
) -> None:
    run = _waiting_review(tmp_path)
    store = get_engine().store
    with make_client() as client:
        forged = client.post(f"/runs/{run.id}/respond", data={"wait": "review", "f.approved": "1"})
        assert forged.status_code == 403 and "CSRF" in forged.text
        response = client.post(
            f"/runs/{run.id}/respond", data=_form(client, run.id, comment="Looks <fine>", score="many")
        )
    assert response.status_code == 409
    assert "invalid inputs for the answer to &#39;review&#39;" in response.text
    assert "&#39;level&#39; is a required property" in response.text
    assert "score: &#39;many&#39; is not valid" in response.text
    assert 'id="f-comment" rows="2">Looks &lt;fine&gt;</textarea>' in response.text  # kept as typed
    assert 'name="f.score" id="f-score" value="many"' in response.text
    assert store.get_run(run.id).status == "waiting"
    [wait] = [s for s in store.list_steps(run.id) if s.step_type == "human_input"]
    assert wait.status == "waiting" and wait.outputs is None


def test_an_answer_from_the_page_continues_the_run_in_the_viewer(history: History, tmp_path: Path) -> None:
    run = _waiting_review(tmp_path)
    store = get_engine().store
    with make_client() as client:
        form = _form(client, run.id, approved="1", level="high", score="4", tags='["short", "clear"]')
        response = client.post(f"/runs/{run.id}/respond", data=form, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"].endswith("notice=answered")
        deadline = time.monotonic() + 20
        while store.get_run(run.id).status != "completed" and time.monotonic() < deadline:
            time.sleep(0.05)
        done = store.get_run(run.id)
        assert done.status == "completed", done.error_message
        review = {"approved": True, "level": "high", "comment": "", "score": 4, "tags": ["short", "clear"]}
        assert done.outputs == {"count": 1, "review": review}
        assert (tmp_path / "markers" / "count-runs").read_text() == "1"  # replayed, not run again
        again = client.post(f"/runs/{run.id}/respond", data=form)
        assert again.status_code == 409 and "not waiting for input (it is completed)" in again.text
        assert 'id="answer-form"' not in client.get(f"/runs/{run.id}").text


def test_a_run_waiting_through_its_child_run_is_answered_from_its_own_page(
    history: History, tmp_path: Path
) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    with pytest.raises(RunWaiting):
        asyncio.run(ReviewParent().execute({"marker_dir": str(markers)}))
    store = get_engine().store
    [root] = store.find_runs(RunFilter(flow_name="ui_review_parent"))
    [child] = store.find_runs(RunFilter(flow_name="ui_review"))
    assert (root.status, child.status) == ("waiting", "waiting")
    with make_client() as client:
        page = client.get(f"/runs/{root.id}").text
        assert 'waiting for input: <span class="mono">review</span>' in page
        assert f'asked by child run <a class="mono" href="/runs/{child.id}">' in page
        assert f"flow respond {child.id} review" in page
        form = _form(client, root.id, approved="1", level="low")
        response = client.post(f"/runs/{root.id}/respond", data=form, follow_redirects=False)
        assert response.status_code == 303, response.text
        deadline = time.monotonic() + 20
        while store.get_run(root.id).status != "completed" and time.monotonic() < deadline:
            time.sleep(0.05)
    done = store.get_run(root.id)
    assert done.status == "completed", done.error_message
    review = {"approved": True, "level": "low", "comment": "", "score": None, "tags": []}
    assert done.outputs == {"child": {"count": 1, "review": review}}
    assert store.get_run(child.id).status == "completed"
