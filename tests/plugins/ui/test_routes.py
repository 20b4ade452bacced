"""The viewer's routes through Starlette's test client, on SQLite and PostgreSQL (``history.py``'s runs)."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest

from .history import SECRET, USER_A, USER_B, XSS_ANSWER, XSS_PROMPT, History


def row_ids(html: str) -> list[str]:
    return re.findall(r'<tr data-run="([0-9a-f-]+)"', html)


def status_of(html: str, run_id: object) -> str:
    found = re.search(rf'<tr data-run="{run_id}">.*?data-status="(\w+)"', html, re.S)
    assert found, f"run {run_id} is not listed"
    return found.group(1)


# -- the runs list ------------------------------------------------------------------------------
def test_runs_newest_first_with_shown_status(client: Any, history: History) -> None:
    page = client.get("/runs")
    assert page.status_code == 200
    ids = row_ids(page.text)
    h = history.ids
    expected = [
        h["live"],
        h["stale"],
        h["grandchild"],
        h["child"],
        h["parent"],
        h["unpriced"],
        h["failed"],
        h["done"],
    ]
    assert ids[:8] == [str(i) for i in expected]
    assert status_of(page.text, h["stale"]) == "crashed"  # stored running, heartbeat stopped
    assert status_of(page.text, h["live"]) == "running"
    assert status_of(page.text, h["failed"]) == "failed"


def test_cost_unknown_is_never_zero(client: Any, history: History) -> None:
    page = client.get("/runs").text
    row = re.search(rf'<tr data-run="{history.ids["unpriced"]}">(.*?)</tr>', page, re.S)
    assert row and ">unknown<" in row.group(1) and "$0<" not in row.group(1)
    row = re.search(rf'<tr data-run="{history.ids["done"]}">(.*?)</tr>', page, re.S)
    assert row and "$0.0123" in row.group(1) and "150" in row.group(1) and "3.0 s" in row.group(1)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("flow=summarize_flow", ["failed", "done"]),
        ("status=crashed", ["stale", "grandchild"][:1]),
        ("status=running", ["live"]),
        (f"user={USER_B}", ["failed"]),
        ("from=2026-01-11&to=2026-01-12", ["unpriced", "failed"]),
        ("flow=summarize_flow&status=completed&user=" + str(USER_A), ["done"]),
        ("flow=nothing_like_it", []),
    ],
)
def test_filters(client: Any, history: History, query: str, names: list[str]) -> None:
    page = client.get(f"/runs?{query}")
    assert page.status_code == 200
    assert row_ids(page.text) == [str(history.ids[n]) for n in names]
    api = client.get(f"/api/runs?{query}").json()
    assert [r["id"] for r in api] == [str(history.ids[n]) for n in names]


def test_totals_of_the_filtered_set(client: Any, history: History) -> None:
    totals = client.get("/api/runs/totals?flow=summarize_flow").json()
    assert totals["runs"] == 2
    assert totals["total_tokens"] == 180
    assert totals["total_cost"] == pytest.approx(0.0133)
    assert totals["cost"] == "$0.0133"
    unpriced = client.get("/api/runs/totals?flow=other_flow&status=completed").json()
    assert (unpriced["runs"], unpriced["cost"]) == (1, "unknown")
    crashed = client.get("/api/runs/totals?status=crashed").json()
    assert crashed["runs"] == 1
    # the page points its script at the same filtered totals
    assert 'data-src="/api/runs/totals?flow=summarize_flow"' in client.get("/runs?flow=summarize_flow").text


def test_pagination(client: Any, history: History) -> None:
    first = client.get("/runs?flow=many_flow&limit=3")
    assert row_ids(first.text) == [str(history.ids[f"many{n}"]) for n in range(3)]
    older = re.search(r'href="([^"]+)" rel="next"', first.text)
    assert older and 'rel="prev"' not in first.text
    second = client.get(older.group(1).replace("&amp;", "&"))
    assert row_ids(second.text) == [str(history.ids[f"many{n}"]) for n in range(3, 6)]
    assert 'rel="prev"' in second.text
    third = client.get("/runs?flow=many_flow&limit=3&offset=6")
    assert row_ids(third.text) == [str(history.ids["many6"])] and 'rel="next"' not in third.text
    assert "runs 7–7" in third.text


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("status=bogus", "status 'bogus' is not one of"),
        ("user=not-a-uuid", "user 'not-a-uuid' is not a user id"),
        ("from=yesterday", "from 'yesterday' is not a date"),
        ("limit=0", "limit must be between 1 and 1000"),
    ],
)
def test_bad_filters_are_named(client: Any, query: str, problem: str) -> None:
    page = client.get(f"/runs?{query}")
    assert page.status_code == 400 and problem in html.unescape(page.text)
    api = client.get(f"/api/runs?{query}")
    assert api.status_code == 400 and problem in api.json()["error"]


# -- one run ------------------------------------------------------------------------------------
def test_run_page(client: Any, history: History) -> None:
    run_id = history.ids["done"]
    page = client.get(f"/runs/{run_id}").text
    assert "Cats are great." in page and "&#34;title&#34;: &#34;Cats&#34;" in page  # inputs, outputs
    assert "worker-7@build-host" in page  # who executes it
    assert "max_cost=0.5" in page and "model=openai/gpt-4o-mini" in page  # budget
    steps = re.findall(r'<tr class="step[^"]*" data-step="(\w+)" data-status="(\w+)"', page)
    assert steps == [("extract", "completed"), ("summarize", "completed")]
    bars = re.findall(r'style="left:([\d.]+)%;width:([\d.]+)%"', page)
    (left1, width1), (left2, width2) = ((float(a), float(b)) for a, b in bars)
    assert left1 == 0 and left2 == pytest.approx(900 / 3000 * 100, abs=0.1)  # to scale of the run's span
    assert width2 / width1 == pytest.approx(2000 / 800, rel=0.02)
    assert "$0.0023" in page and "$0.0100" in page and "2 calls" in page
    assert "data-events=" not in page  # a finished run is not followed live


def test_failed_run_marks_the_failed_step_and_shows_the_error(client: Any, history: History) -> None:
    page = client.get(f"/runs/{history.ids['failed']}").text
    assert 'class="step failed" data-step="write" data-status="failed"' in page
    assert "StepFailed: write: the model refused" in page
    assert 'id="resume"' in page and 'id="cancel"' not in page


def test_child_runs_nested_and_parent_linked(client: Any, history: History) -> None:
    h = history.ids
    page = client.get(f"/runs/{h['parent']}").text
    tree = page[page.index("child runs") :]
    assert tree.index(f'data-child="{h["child"]}"') < tree.index(f'data-child="{h["grandchild"]}"')
    assert tree.count('<ul class="tree">') == 2  # the grandchild is nested inside the child
    assert "leaf broke" in tree
    child = client.get(f"/runs/{h['child']}").text
    assert f'<a href="/runs/{h["parent"]}">parent_flow' in child
    assert "resumed through its root run" not in child  # completed: nothing to resume
    grandchild = client.get(f"/runs/{h['grandchild']}").text
    assert "resumed through its root run" in grandchild and 'id="resume"' not in grandchild


def test_run_by_prefix_redirects_and_unknown_is_404(client: Any, history: History) -> None:
    run_id = history.ids["done"]
    response = client.get(f"/runs/{run_id.hex[:10]}", follow_redirects=False)
    assert response.status_code == 302 and response.headers["location"] == f"/runs/{run_id}"
    assert client.get("/runs/0000000000", follow_redirects=False).status_code == 404
    assert (
        client.get("/search?q=" + run_id.hex[:12], follow_redirects=False).headers["location"]
        == f"/runs/{run_id}"
    )
    assert client.get("/api/runs/zzz").status_code == 400


# -- a step and its LLM calls -------------------------------------------------------------------
def test_step_page_shows_calls_attempts_and_validation(client: Any, history: History) -> None:
    page = client.get(f"/runs/{history.ids['done']}/steps/{history.steps['summarize']}").text
    calls = re.findall(r'data-call="([0-9a-f-]+)"', page)
    assert calls == [str(history.calls["first"]), str(history.calls["second"])]
    first = page[: page.index(f'data-call="{history.calls["second"]}"')]
    second = page[page.index(f'data-call="{history.calls["second"]}"') :]
    attempts = re.findall(r'<tr data-attempt="(\d)">(.*?)</tr>', first, re.S)
    assert [n for n, _ in attempts] == ["1", "2"]
    assert (
        ">429<" in attempts[0][1]
        and "RateLimitError: slow down" in attempts[0][1]
        and "120 ms" in attempts[0][1]
    )
    assert ">200<" in attempts[1][1] and "450 ms" in attempts[1][1]  # the wait before the retry
    assert "rejected by validation" in first
    assert "valid: accepted as the step&#39;s Outputs" in second
    assert "points: Field required. Answer again." in second  # the re-ask prompt
    assert "&#34;points&#34;: [\n    &#34;great&#34;\n  ]" in second  # structured answer pretty-printed
    assert "&#34;temperature&#34;: 0.2" in second  # request params


def test_no_secret_is_ever_rendered(client: Any, history: History) -> None:
    step = client.get(f"/runs/{history.ids['failed']}/steps/{history.steps['failed_extract']}").text
    assert "&#34;temperature&#34;: 0" in step
    api = client.get(f"/api/runs/{history.ids['failed']}").text
    for text in (step, api):
        assert SECRET not in text and "api_key" not in text and "Authorization" not in text


def test_store_text_is_escaped(client: Any, history: History) -> None:
    for url in (
        f"/runs/{history.ids['failed']}",
        f"/runs/{history.ids['failed']}/steps/{history.steps['failed_extract']}",
    ):
        page = client.get(url).text
        assert "<script>window.__xss" not in page and "<img src=x" not in page
        assert "&lt;script&gt;window.__xss = 1&lt;/script&gt;" in page
    step = client.get(f"/runs/{history.ids['failed']}/steps/{history.steps['failed_extract']}").text
    assert "&lt;img src=x onerror=&#34;window.__xss = 2&#34;&gt;" in step
    assert XSS_PROMPT in client.get(f"/api/runs/{history.ids['failed']}").json()["run"]["inputs"]["article"]
    assert XSS_ANSWER


def test_step_by_key_and_unknown_step(client: Any, history: History) -> None:
    page = client.get(f"/runs/{history.ids['failed']}/steps/write")
    assert page.status_code == 200 and "LLMError: the model refused" in page.text
    assert "This step made no LLM call." in page.text
    assert client.get(f"/runs/{history.ids['failed']}/steps/nope").status_code == 404


# -- flows --------------------------------------------------------------------------------------
def test_flows_page_and_api(client: Any) -> None:
    page = client.get("/flows").text
    assert 'id="flow-article_processing"' in page
    assert "Extracts an article" in page and "article_text" in page and "input JSON schema" in page
    flows = {f["name"]: f for f in client.get("/api/flows").json()["flows"]}
    article = flows["article_processing"]
    assert article["input_schema"]["required"] == ["article_text"]
    assert [i["name"] for i in article["inputs"]] == ["article_text", "style"]


# -- the JSON API mirrors the CLI ---------------------------------------------------------------
def test_api_mirrors_flow_runs_and_flow_show_json(client: Any, history: History, db_url: str) -> None:
    import json

    from click.testing import CliRunner

    from flow_engine.cli.main import cli

    api = client.get("/api/runs?limit=100").json()
    tree = client.get(f"/api/runs/{history.ids['parent']}").json()
    runner = CliRunner()  # after the API calls: --db opens the engine afresh
    listed = json.loads(runner.invoke(cli, ["--db", db_url, "runs", "--json", "--limit", "100"]).output)
    assert api == listed
    shown = json.loads(
        runner.invoke(cli, ["--db", db_url, "show", "--json", str(history.ids["parent"])]).output
    )
    assert tree == shown
