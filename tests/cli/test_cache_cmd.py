"""`flow cache stats` / `flow cache clear`, and `flow run --cache`, through the offline model."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from click.testing import CliRunner

from flow_engine.cli.main import cli
from flow_engine.engine import get_engine
from flow_engine.storage import CacheEntry, utcnow


def flow(*args: str) -> object:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


async def _put(**fields: object) -> None:
    await get_engine().store.cache_put(CacheEntry(**{"response": {"x": 1}, **fields}))


@pytest.mark.slow
def test_flow_run_cache_answers_the_second_run_from_the_cache():
    args = ["run", "article_processing", "--cache", "--json", "-i", "article_text=A short text about cats."]
    first = flow(*args)
    assert first.exit_code == 0, first.output
    second = flow(*args)
    assert second.exit_code == 0, second.output
    store = get_engine().store
    runs = store.list_runs(limit=10)
    newest = runs[0]
    hits = [r for r in store.list_llm_requests(flow_run_id=newest.id) if r.cached_from is not None]
    assert hits and all(r.cost == 0.0 for r in hits)
    again, before = json.loads(second.stdout)["outputs"], json.loads(first.stdout)["outputs"]
    assert again.pop("metadata")["total_tokens"] == 0  # nothing was spent the second time
    before.pop("metadata")
    assert again == before
    shown = flow("cache", "stats")
    assert shown.exit_code == 0 and "offline/default" in shown.output
    [row] = json.loads(flow("cache", "stats", "--json").output)
    assert row["hits"] == len(hits) and row["entries"] >= len(hits)


def test_without_cache_nothing_is_kept():
    assert flow("run", "article_processing", "-i", "article_text=Some text.").exit_code == 0
    assert flow("cache", "stats").output.strip() == "The response cache is empty."


async def test_flow_cache_clear_by_model_and_age():
    now = utcnow()
    await _put(key="a" * 64, model="m1", created_at=now - timedelta(days=40))
    await _put(key="b" * 64, model="m1", created_at=now)
    await _put(key="c" * 64, model="m2", created_at=now)
    result = flow("cache", "clear", "--older-than", "30d")
    assert "Removed 1 cached answer(s)." in result.output
    assert "Removed 1 cached answer(s)." in flow("cache", "clear", "--model", "m2").output
    assert [s.model for s in get_engine().store.cache_stats()] == ["m1"]
    assert "Removed 1" in flow("cache", "clear").output
    assert get_engine().store.cache_stats() == []


def test_a_bad_age_is_a_usage_error():
    result = CliRunner().invoke(cli, ["cache", "clear", "--older-than", "soon"])
    assert result.exit_code == 2
    assert "--older-than 'soon'" in result.output
    assert "Traceback" not in result.output


def test_flow_show_marks_a_cache_hit():
    args = ["run", "article_processing", "--cache", "-i", "article_text=Cats sleep."]
    assert flow(*args).exit_code == 0
    assert flow(*args).exit_code == 0
    newest = get_engine().store.list_runs(limit=1)[0]
    shown = CliRunner().invoke(cli, ["show", str(newest.id)])
    assert shown.exit_code == 0
    assert "cache hit" in shown.output


async def test_flow_cache_stats_never_rounds_a_cheap_saving_to_zero():
    await _put(key="d" * 64, model="cheap", cost=0.000006)
    assert await get_engine().store.cache_get("d" * 64, utcnow()) is not None  # one hit
    shown = flow("cache", "stats").output
    assert "$0.000006" in shown and "0.0000 " not in shown
