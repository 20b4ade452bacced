"""Inputs of the news step: ``since`` in every accepted form, source entries checked against the registry."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from flow_engine.plugins.news import NewsInputs, NewsItem, parse_since
from flow_engine.plugins.news.models import parse_duration

NOW = datetime(2026, 3, 3, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24h", timedelta(hours=24)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("90m", timedelta(minutes=90)),
        ("90min", timedelta(minutes=90)),
        ("1d12h", timedelta(days=1, hours=12)),
        (" 1.5h ", timedelta(minutes=90)),
        ("30s", timedelta(seconds=30)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected
    assert parse_since(text, now=NOW) == NOW - expected


def test_since_dates_and_datetimes_become_aware_utc() -> None:
    assert parse_since("2026-03-01", now=NOW) == datetime(2026, 3, 1, tzinfo=UTC)
    assert parse_since(date(2026, 3, 1), now=NOW) == datetime(2026, 3, 1, tzinfo=UTC)
    assert parse_since(datetime(2026, 3, 1, 8, 0), now=NOW) == datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    plus_two = timezone(timedelta(hours=2))
    assert parse_since("2026-03-01T10:00:00+02:00", now=NOW) == datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    assert parse_since(datetime(2026, 3, 1, 10, 0, tzinfo=plus_two), now=NOW).tzinfo == UTC
    assert parse_since(timedelta(hours=1), now=NOW) == NOW - timedelta(hours=1)
    assert parse_since(None) is None
    assert parse_since("  ") is None


@pytest.mark.parametrize("bad", ["yesterday", "7 days", "d7", "2026-13-01", 42])
def test_bad_since_says_what_is_accepted(bad: object) -> None:
    with pytest.raises(ValueError, match="duration like 24h"):
        parse_since(bad)


def test_inputs_resolve_since_and_reject_bad_values_by_field() -> None:
    inputs = NewsInputs(sources=["https://example.com/feed.xml"], since="24h")
    assert inputs.since is not None and inputs.since.tzinfo is not None
    assert datetime.now(UTC) - inputs.since - timedelta(hours=24) < timedelta(minutes=1)
    with pytest.raises(ValidationError) as info:
        NewsInputs(sources=["https://example.com/feed.xml"], since="last week", max_items=0)
    fields = {err["loc"][0] for err in info.value.errors()}
    assert fields == {"since", "max_items"}


def test_sources_entries_are_checked_against_the_registry() -> None:
    ok = NewsInputs(
        sources=[
            " https://example.com/a.xml ",
            "file:///tmp/feed.xml",
            "file:rel/feed.xml",
            "ddgs",
            "https://example.com/a.xml",
        ]
    )
    assert ok.sources == ["https://example.com/a.xml", "file:///tmp/feed.xml", "file:rel/feed.xml", "ddgs"]
    assert NewsInputs(sources="https://example.com/a.xml").sources == ["https://example.com/a.xml"]

    with pytest.raises(ValidationError, match=r"unknown news source 'nytimes' \(registered: ddgs, rss\)"):
        NewsInputs(sources=["nytimes"])
    with pytest.raises(
        ValidationError, match=r"no news source handles ftp:// URLs \(handled: file://, http://, https://\)"
    ):
        NewsInputs(sources=["ftp://example.com/feed.xml"])
    with pytest.raises(ValidationError, match="looks like a file path; write it as a URL: file:///"):
        NewsInputs(sources=["feeds/local.xml"])
    with pytest.raises(ValidationError, match="at least 1 item"):
        NewsInputs(sources=[])


def test_news_item_published_is_always_timezone_aware() -> None:
    item = NewsItem(title="t", url="https://x.example/", published=datetime(2026, 1, 1, 12, 0))
    assert item.published == datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    shifted = NewsItem(title="t", url="https://x.example/", published="2026-01-01T14:00:00+02:00")
    assert shifted.published == datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert NewsItem(title="t", url="u").published is None
