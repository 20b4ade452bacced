"""The installed plugin as a user meets it: ``flow plugins``, ``flow list`` and ``flow run`` subprocesses."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from webpage_site import Site

from flow_engine import configure

pytestmark = pytest.mark.slow  # each test starts `flow` processes

Flow = Callable[..., Any]


def test_flow_plugins_lists_the_plugin_as_loaded(flow: Flow) -> None:
    result = flow("plugins", "--json")
    assert result.returncode == 0, result.stderr

    rows = {row["name"]: row for row in result.json()}
    row = rows["webpage"]
    assert row["distribution"] == "flow-engine-webpage"
    assert row["version"] == version("flow-engine-webpage") == "0.1.0"
    assert row["module"] == "flow_engine_webpage.plugin"
    assert row["status"] == "loaded" and row["error"] is None
    assert row["builtin"] is False
    assert row["provides"] == {"step types": ["webpage_text"]}


def test_flow_plugins_text_output(flow: Flow) -> None:
    result = flow("plugins")
    assert result.returncode == 0, result.stderr

    lines = result.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == ["webpage"])
    assert lines[start].split() == ["webpage", "flow-engine-webpage", "0.1.0", "loaded"]
    assert "  module: flow_engine_webpage.plugin" in lines[start + 1 : start + 4]
    assert "  step types: webpage_text" in lines[start + 1 : start + 4]
    assert "Warning" not in result.stderr


def test_flow_list_shows_the_flow_and_its_inputs(flow: Flow) -> None:
    result = flow("list", "--json")
    assert result.returncode == 0, result.stderr

    data = result.json()
    assert data["failed"] == []
    entry = {f["name"]: f for f in data["flows"]}["page_summary"]
    assert entry["target"] == "flow_engine_webpage.flows:PageSummaryFlow"
    assert entry["distribution"] == "flow-engine-webpage"
    assert entry["description"].startswith("Reads a web page and summarises it")
    assert entry["total_steps"] == 2
    inputs = {i["name"]: i for i in entry["inputs"]}
    assert list(inputs) == ["url", "max_chars", "timeout"]
    assert inputs["url"]["required"] is True and inputs["url"]["type"] == "str"
    assert inputs["max_chars"] == {**inputs["max_chars"], "required": False, "default": 12000, "type": "int"}
    assert inputs["timeout"]["default"] == 15.0


def test_flow_list_text_output(flow: Flow) -> None:
    result = flow("list")
    assert result.returncode == 0, result.stderr

    block = result.stdout.split("page_summary  (flow_engine_webpage.flows:PageSummaryFlow)", 1)[1]
    block = block.split("\n\n", 1)[0]
    assert "Reads a web page and summarises it" in block
    assert "url" in block and "required" in block
    assert "max_chars" in block and "default: 12000" in block


def test_flow_run_summarises_a_local_page_offline(flow: Flow, site: Site) -> None:
    url = site.url("/article.html")
    result = flow("run", "page_summary", "--input", f"url={url}", "--input", "max_chars=4000", "--json")
    assert result.returncode == 0, result.stderr

    payload = result.json()  # stdout is exactly one JSON object
    assert payload["status"] == "completed"
    assert payload["run_id"]
    assert payload["error"] is None
    outputs = payload["outputs"]
    assert outputs["url"] == outputs["final_url"] == url
    assert outputs["title"] == "Tidal Energy Comes of Age | Coastal Gazette"
    assert outputs["summary"] and outputs["key_points"]
    assert 0 < outputs["chars"] <= 4000
    assert payload["total_tokens"] > 0
    assert site.hits == ["/article.html"]
    assert "fetch_page" not in result.stdout  # progress goes to stderr, not into the JSON


def test_flow_run_prints_outputs_and_progress(flow: Flow, site: Site) -> None:
    result = flow("run", "page_summary", "--input", f"url={site.url('/noisy.html')}")
    assert result.returncode == 0, result.stderr

    outputs = json.loads(result.stdout)
    assert outputs["title"] == "Sourdough at Altitude"
    assert "fetch_page (webpage_text) [1/2]" in result.stderr
    assert "summarize_page (structured_llm) [2/2]" in result.stderr
    assert "completed" in result.stderr


def test_flow_run_with_a_failing_page_exits_1_and_records_the_failure(flow: Flow, site: Site) -> None:
    result = flow("run", "page_summary", "--input", f"url={site.url('/data.json')}", "--json")

    assert result.returncode == 1
    payload = result.json()
    assert payload["status"] == "failed" and payload["run_id"]
    assert "not an HTML page" in payload["error"] and "application/json" in payload["error"]
    assert "at step 'fetch_page'" in result.stderr
    assert "Traceback" not in result.stderr


def test_flow_run_with_a_bad_url_exits_2_without_a_run(flow: Flow) -> None:
    result = flow("run", "page_summary", "--input", "url=ftp://example.com/page.html")

    assert result.returncode == 2
    assert result.stdout == ""
    assert "url" in result.stderr and "expected an http://, https:// or file:// URL" in result.stderr
    assert "Traceback" not in result.stderr


def test_flow_run_records_the_run_in_a_sqlite_database(flow: Flow, site: Site, tmp_path: Path) -> None:
    """Across processes: what `flow run` stored is there to read afterwards, step by step."""
    database = f"sqlite:///{tmp_path / 'runs.db'}"
    try:  # the SQL backend is flow-engine's; this test is about the plugin's runs, so probe it first
        configure(database_url=f"sqlite:///{tmp_path / 'probe.db'}", data_dir=tmp_path / "data").store  # noqa: B018
    except Exception as exc:
        pytest.skip(f"flow-engine's sqlite storage does not open here: {type(exc).__name__}: {exc}")

    result = flow(
        "run", "page_summary", "--input", f"url={site.url('/article.html')}", "--json",
        FLOW_ENGINE_DATABASE_URL=database,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    run_id = uuid.UUID(result.json()["run_id"])

    store = configure(database_url=database, data_dir=tmp_path / "data").store
    run = store.get_run(run_id)
    assert run is not None and run.flow_name == "page_summary" and run.status == "completed"
    assert run.inputs["url"] == site.url("/article.html")
    assert run.outputs is not None and run.outputs["title"] == "Tidal Energy Comes of Age | Coastal Gazette"
    steps = store.list_steps(run_id)
    assert [(s.step_name, s.step_type, s.status) for s in steps] == [
        ("fetch_page", "webpage_text", "completed"),
        ("summarize_page", "structured_llm", "completed"),
    ]
    assert steps[0].outputs is not None
    assert steps[0].outputs["output_content"]["final_url"] == site.url("/article.html")
    assert len(store.list_llm_requests(flow_run_id=run_id)) == 1
