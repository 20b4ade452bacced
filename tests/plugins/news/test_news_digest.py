"""The ``news_digest`` example flow: in process against local feeds, and as ``flow run`` in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from flow_engine import InputValidationError
from flow_engine.engine import get_engine
from flow_engine.examples.news_digest import SAMPLE_FEED, DigestLine, NewsDigestFlow, digest_items, why_empty
from flow_engine.plugins.news import NewsItem

from .conftest import FIXTURES, FeedServer

FLOW_SCRIPT = Path(sys.executable).with_name("flow")


def test_digest_lines_keep_every_item_once_with_its_own_link() -> None:
    items = [NewsItem(title=f"Story {n}", url=f"https://x.example/{n}", source="X") for n in (1, 2, 3)]
    lines = [
        DigestLine(number=2, line="  The second   story. "),
        DigestLine(number=2, line="A repeat of two: ignored."),
        DigestLine(number=9, line="No such item: ignored."),
        DigestLine(number=0, line="Nor this."),
        DigestLine(number=1, line="   "),
    ]
    entries = digest_items(items, lines)
    assert [(e.line, e.url) for e in entries] == [
        ("Story 1", "https://x.example/1"),  # blank line from the model: the title stands in
        ("The second story.", "https://x.example/2"),
        ("Story 3", "https://x.example/3"),
    ]


def test_why_empty() -> None:
    assert why_empty({}) == "The sources returned no items."
    assert why_empty({"fetched": 6, "too_old": 4, "query": 2}) == (
        "None of the 6 items the sources returned was kept (4 too old, 2 not matching the query)."
    )


async def test_digest_offline_against_local_feeds(feed_server: FeedServer) -> None:
    failing = feed_server.url("status/503")
    sources = [
        feed_server.url("rss.xml"),
        (FIXTURES / "atom.xml").as_uri(),
        feed_server.url("duplicates.xml"),
        failing,
    ]
    flow = NewsDigestFlow()
    outputs = await flow.execute({"sources": sources, "query": "harbour", "max_items": 3})
    assert [item["url"] for item in outputs["items"]] == [
        "https://science.example.org/articles/tidal-turbines",
        "https://wire.example.net/festival",
        "https://news.example.com/2026/03/solar-ferry?utm_source=rss&utm_medium=feed",
    ]
    assert all(item["line"] for item in outputs["items"])
    assert outputs["headline"] and outputs["summary"]
    markdown = outputs["markdown"]
    assert markdown.startswith(f"# {outputs['headline']}\n")
    assert "([Coastal Science Weekly](https://science.example.org/articles/tidal-turbines))" in markdown
    assert outputs["source_errors"] == {failing: f"HTTP 503 Service Unavailable from {failing}"}
    assert outputs["image"] is None

    assert flow.run_id is not None
    store = get_engine().store
    run = store.get_run(flow.run_id)
    assert run is not None and run.status == "completed"
    steps = store.list_steps(flow.run_id)
    assert [(s.step_name, s.step_type, s.status) for s in steps] == [
        ("gather_news", "news_gathering", "completed"),
        ("write_digest", "structured_llm", "completed"),
    ]
    prompt_items = steps[1].inputs["items"]
    assert [i["url"] for i in prompt_items] == [i["url"] for i in outputs["items"]]


async def test_digest_with_image_and_default_sample_feed() -> None:
    outputs = await NewsDigestFlow().execute({"image": True, "image_size": "256x256"})
    assert len(outputs["items"]) == 6
    assert {i["source"] for i in outputs["items"]} == {"Flow Engine Sample News"}
    with open(outputs["image"], "rb") as image:  # noqa: ASYNC230 - a test reading a tiny file
        assert image.read(8) == b"\x89PNG\r\n\x1a\n"


async def test_nothing_gathered_means_no_llm_call(tmp_path: Path) -> None:
    flow = NewsDigestFlow()
    outputs = await flow.execute({"sources": [SAMPLE_FEED.as_uri()], "query": "volcano", "image": True})
    assert outputs["headline"] == "No news about 'volcano'"
    assert (
        outputs["summary"] == "None of the 6 items the sources returned was kept (6 not matching the query)."
    )
    assert outputs["items"] == [] and outputs["image"] is None
    assert flow.run_id is not None
    assert [s.step_name for s in get_engine().store.list_steps(flow.run_id)] == ["gather_news"]


async def test_bad_inputs_are_refused_before_the_run_starts() -> None:
    with pytest.raises(InputValidationError) as info:
        await NewsDigestFlow().execute({"sources": ["nytimes", "ftp://x/feed"], "since": "last week"})
    message = str(info.value)
    assert "sources: Value error, unknown news source 'nytimes' (registered: ddgs, rss)" in message
    assert "no news source handles ftp:// URLs" in message
    assert "since: Value error, since must be a duration like 24h" in message
    assert get_engine().store.list_runs() == []


def _flow_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOW_ENGINE_")}
    env.update(
        FLOW_ENGINE_DATABASE_URL=f"sqlite:///{tmp_path / 'runs.db'}" if _sqlite_available() else "memory://",
        FLOW_ENGINE_DATA_DIR=str(tmp_path / "data"),
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        NO_COLOR="1",
    )
    return env


def _sqlite_available() -> bool:
    """Record the subprocess's runs in a SQLite file when the SQL backend is installed, else in memory."""
    return any("sqlite" in b.schemes for b in get_engine().plugins.storage_backends())


def _flow(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [str(FLOW_SCRIPT)] if FLOW_SCRIPT.exists() else [sys.executable, "-m", "flow_engine.cli.main"]
    return subprocess.run(
        [*command, *args],
        cwd=cwd,
        env=_flow_env(cwd),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.slow
def test_flow_run_news_digest_cli_offline(tmp_path: Path, feed_server: FeedServer) -> None:
    atom_file = (FIXTURES / "atom.xml").as_uri()
    sources = json.dumps([atom_file, feed_server.url("rss.xml"), feed_server.url("not_a_feed.html")])
    result = _flow(
        "run",
        "news_digest",
        "--input",
        f"sources={sources}",
        "--input",
        "query=harbour",
        "--input",
        "max_items=2",
        "--json",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    payload: dict[str, Any] = json.loads(result.stdout)
    assert payload["status"] == "completed"
    outputs = payload["outputs"]
    assert [i["url"] for i in outputs["items"]] == [
        "https://science.example.org/articles/tidal-turbines",
        "https://news.example.com/2026/03/solar-ferry?utm_source=rss&utm_medium=feed",
    ]
    assert "is an HTML page" in outputs["source_errors"][feed_server.url("not_a_feed.html")]
    assert {r["path"] for r in feed_server.requests} == {"/rss.xml", "/not_a_feed.html"}
    database = tmp_path / "runs.db"
    if database.exists():  # the run and its steps were recorded where a later `flow show` looks
        import sqlalchemy as sa

        engine = sa.create_engine(f"sqlite:///{database}")
        with engine.connect() as conn:
            runs = conn.execute(sa.text("SELECT flow_name, status FROM flow_runs")).all()
            steps = conn.execute(
                sa.text("SELECT step_name, status FROM flow_step_runs ORDER BY step_order")
            ).all()
        engine.dispose()
        assert [tuple(r) for r in runs] == [("news_digest", "completed")]
        assert [tuple(s) for s in steps] == [("gather_news", "completed"), ("write_digest", "completed")]


@pytest.mark.slow
def test_flow_run_news_digest_cli_errors(tmp_path: Path) -> None:
    bad = _flow("run", "news_digest", "--input", "sources=nytimes", cwd=tmp_path)
    assert bad.returncode == 2
    assert "unknown news source 'nytimes'" in bad.stderr and "Traceback" not in bad.stderr
    failed = _flow("run", "news_digest", "--input", 'sources=["file:missing.xml"]', cwd=tmp_path)
    assert failed.returncode == 1
    assert "all 1 news source failed:" in failed.stderr and "no such file: missing.xml" in failed.stderr
    assert "Traceback" not in failed.stderr


@pytest.mark.slow
def test_flow_plugins_lists_news_sources_without_ddgs(tmp_path: Path) -> None:
    result = _flow("plugins", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "news sources: rss, ddgs (unavailable: the ddgs package is not installed" in result.stdout
