"""The viewer in a real browser (Playwright driving Debian's Chromium), against ``flow ui`` in its own
process and flows running in others: filter runs, open a run and an LLM call, watch a running flow's
steps appear live, cancel a run from the page, answer a run waiting for a person, and check that
``<script>`` from the store is shown as text, never run.

One browser for the module; the server and the flows write to one SQLite file.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .browser import (
    launch,
    missing_browser,
    start_gated_flow,
    start_review,
    stored_run,
    ui_server,
    wait_for_run,
)
from .history import XSS_PROMPT, History, write_history

_why_not = missing_browser()
if _why_not is not None:
    if os.environ.get("FLOW_ENGINE_TEST_REQUIRE_SERVICES"):
        pytest.fail(f"FLOW_ENGINE_TEST_REQUIRE_SERVICES is set but {_why_not}", pytrace=False)
    pytest.skip(_why_not, allow_module_level=True)

TIMEOUT = 30_000  # ms: the machine may be busy; everything here normally takes well under a second


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The history in a SQLite file, a live flow already started on it, and the server."""
    from flow_engine.plugins.sql.store import SqlStore

    folder = tmp_path_factory.mktemp("ui_browser")
    url = f"sqlite:///{folder / 'runs.db'}"
    store = SqlStore(url)
    history = write_history(store)
    store.close()
    # started first: the flow process imports litellm while the first tests run
    flow = start_gated_flow(url, folder / "live-gates", "Hello <b>bold</b>", cwd=folder)
    with ui_server(url, cwd=folder) as base:
        yield {"url": url, "base": base, "history": history, "folder": folder, "flow": flow}
    for process in (flow,):
        if process.poll() is None:
            process.kill()
        process.wait(10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


@pytest.fixture
def page(site: dict[str, Any], browser: Any) -> Iterator[Any]:
    context = browser.new_context(base_url=site["base"], viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    context.close()
    assert not errors, f"script errors on the page: {errors}"


def rows(page: Any) -> list[str]:
    return page.locator("table.runs tbody tr").evaluate_all("rows => rows.map(r => r.dataset.run)")


@pytest.mark.slow
def test_runs_page_filter_and_totals(page: Any, site: dict[str, Any]) -> None:
    h: History = site["history"]
    page.goto("/runs?flow=many_flow&limit=20")
    assert rows(page) == [str(h.ids[f"many{n}"]) for n in range(7)]
    page.wait_for_selector("#totals[data-runs='7']")
    page.select_option("select[name=status]", "failed")
    page.fill("input[name=flow]", "")
    page.click("button[type=submit]")
    page.wait_for_url("**/runs?*status=failed*")
    assert rows(page) == [str(h.ids["grandchild"]), str(h.ids["failed"])]
    page.wait_for_selector("#totals[data-runs='2']")
    assert "2 runs" in page.inner_text("#totals")
    page.fill("input[name=flow]", "other_flow")
    page.select_option("select[name=status]", "crashed")
    page.click("button[type=submit]")
    page.wait_for_url("**status=crashed*")
    assert rows(page) == [str(h.ids["stale"])]
    assert page.inner_text(f"tr[data-run='{h.ids['stale']}'] .badge") == "crashed"


def test_open_a_run_then_an_llm_call(page: Any, site: dict[str, Any]) -> None:
    h: History = site["history"]
    page.goto("/runs?flow=summarize_flow")
    page.click(f"tr[data-run='{h.ids['done']}'] a")
    page.wait_for_url(f"**/runs/{h.ids['done']}")
    assert page.locator("tr.step").count() == 2
    bars = page.locator(".track .bar")
    first, second = bars.nth(0).bounding_box(), bars.nth(1).bounding_box()
    assert second["width"] / first["width"] == pytest.approx(2000 / 800, rel=0.1)  # drawn to scale
    assert second["x"] > first["x"] + first["width"] - 1
    assert "worker-7@build-host" in page.inner_text("dl.facts")
    page.click("tr[data-step='summarize'] a")
    page.wait_for_url("**/steps/**")
    attempts = page.locator(f"section[data-call='{h.calls['first']}'] tr[data-attempt]")
    assert attempts.count() == 2
    assert "429" in attempts.nth(0).inner_text() and "slow down" in attempts.nth(0).inner_text()
    assert "450 ms" in attempts.nth(1).inner_text()
    second_call = page.locator(f"section[data-call='{h.calls['second']}']")
    assert "valid: accepted" in second_call.inner_text()
    assert '"points": [' in second_call.locator("pre.answer").inner_text()


def test_script_from_the_store_is_text(page: Any, site: dict[str, Any]) -> None:
    h: History = site["history"]
    page.goto(f"/runs/{h.ids['failed']}/steps/{h.steps['failed_extract']}")
    prompt = page.locator(".message.role-user pre").inner_text()
    assert XSS_PROMPT in prompt
    assert '<img src=x onerror="window.__xss = 2">' in page.locator("pre.answer").inner_text()
    assert page.evaluate("window.__xss") is None
    assert page.locator("script:not([src])").count() == 0 and page.locator("main img").count() == 0
    page.goto(f"/runs/{h.ids['failed']}")
    assert XSS_PROMPT in page.inner_text("#live")
    assert page.evaluate("window.__xss") is None


@pytest.mark.slow
def test_a_running_flow_updates_live(page: Any, site: dict[str, Any]) -> None:
    gates: Path = site["folder"] / "live-gates"
    run_id = wait_for_run(site["url"], "ui_gated", set())
    page.goto(f"/runs/{run_id}")
    page.wait_for_selector("#live.following")
    page.evaluate("window.__sameDocument = true")  # gone if the page reloaded
    page.wait_for_selector("tr[data-step='wait_for_gate'][data-status='running']")
    assert page.locator("tr.step").count() == 1
    (gates / "go-1").touch()
    page.wait_for_selector("tr[data-step='wait_for_gate'][data-status='completed']")
    (gates / "go-2").touch()
    page.wait_for_selector("tr[data-step='ask_model'][data-status='completed']", timeout=90_000)
    assert "offline/default" in page.inner_text("tr[data-step='ask_model']")
    (gates / "go-3").touch()
    page.wait_for_selector("#live[data-ended='1']")
    assert page.inner_text(".run-head .badge") == "completed"
    assert [s for s in page.locator("tr.step").evaluate_all("r => r.map(x => x.dataset.step)")] == [
        "wait_for_gate",
        "ask_model",
        "wait_for_gate#2",
    ]
    assert "passed go-3" in page.inner_text("#outputs")
    assert page.evaluate("window.__sameDocument") is True
    site["flow"].wait(30)


@pytest.mark.slow
def test_cancel_from_the_page(page: Any, site: dict[str, Any]) -> None:
    known = {wait_for_run(site["url"], "ui_gated", set())}
    gates = site["folder"] / "cancel-gates"
    flow = start_gated_flow(site["url"], gates, "never asked", cwd=site["folder"])
    try:
        run_id = wait_for_run(site["url"], "ui_gated", known)
        page.goto(f"/runs/{run_id}")
        page.wait_for_selector("tr[data-step='wait_for_gate'][data-status='running']")
        page.click("#cancel")
        page.wait_for_url("**notice=cancel-requested")
        assert "stops at its next step boundary" in page.inner_text("#notice")
        assert stored_run(site["url"], run_id).status == "running"
        (gates / "go-1").touch()  # the step it is in finishes; the next one is not started
        (gates / "go-2").touch()
        page.wait_for_selector(".run-head .badge[data-status='cancelled']")
        cancelled = stored_run(site["url"], run_id)
        assert cancelled.status == "cancelled" and cancelled.step_progress == 1
        assert page.locator("tr.step").count() == 1 and page.locator("#cancel").count() == 0
        flow.wait(30)
    finally:
        if flow.poll() is None:
            flow.kill()
        try:
            flow.wait(10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            pass


def test_answer_a_waiting_run_from_the_page(page: Any, site: dict[str, Any]) -> None:
    start_review(site["url"], site["folder"] / "review-markers", cwd=site["folder"])
    run_id = wait_for_run(site["url"], "ui_review", set())
    page.goto(f"/runs/{run_id}")
    assert page.inner_text("#wait-prompt") == "Approve the <b>draft</b>?"
    page.fill("#f-score", "9")
    page.fill("#f-tags", "not json")
    page.click("#answer")  # level left empty, tags not a list: refused, what was typed kept
    assert "'level' is a required property" in page.inner_text("#problem")
    assert "tags: 'not json' is not of type 'array'" in page.inner_text("#problem")
    assert page.input_value("#f-score") == "9" and stored_run(site["url"], run_id).status == "waiting"
    page.check("#f-approved")
    page.select_option("#f-level", "high")
    page.fill("#f-comment", "Ship it")
    page.fill("#f-tags", '["ok"]')
    page.click("#answer")
    page.wait_for_url("**notice=answered")
    page.wait_for_selector(".run-head .badge[data-status='completed']")
    assert page.locator("#wait").count() == 0
    review = {"approved": True, "level": "high", "comment": "Ship it", "score": 9, "tags": ["ok"]}
    assert stored_run(site["url"], run_id).outputs == {"count": 1, "review": review}
    assert '"comment": "Ship it"' in page.inner_text("#outputs")
