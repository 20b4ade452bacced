"""The news step end to end against a real HTTP server on 127.0.0.1 and ``file:`` URLs."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from flow_engine import BaseFlow, InputValidationError
from flow_engine.engine import get_engine
from flow_engine.plugins.news import NewsGatheringError, NewsItem, NewsStep

from .conftest import FIXTURES, FeedServer


class QuickNews(NewsStep):
    """Short limits so the failure tests run fast."""

    step_name = "quick_news"
    timeout = 2.0  # short enough for the timeout test, long enough for a loaded CI machine
    max_bytes = 100_000
    max_redirects = 3


def by_url(items: list[NewsItem]) -> dict[str, NewsItem]:
    return {i.url: i for i in items}


async def test_parses_rss_2_feed(feed_server: FeedServer) -> None:
    url = feed_server.url("rss.xml")
    result = await NewsStep().execute({"sources": [url]})
    items = result.output_content
    assert [i.title for i in items] == [
        "Solar ferry enters service on the harbour route",
        "Council approves new sea wall budget",
        "Fishing quotas cut for the spring season",
        "Lighthouse museum reopens",
    ]
    ferry = items[0]
    assert ferry.url == "https://news.example.com/2026/03/solar-ferry?utm_source=rss&utm_medium=feed"
    assert ferry.source == "Harbour Gazette"
    assert ferry.published == datetime(2026, 3, 2, 7, 30, tzinfo=UTC)  # +0100 converted, tz-aware
    assert ferry.summary == "The first solar-powered ferry carried 120 passengers on Monday."  # HTML stripped
    assert ferry.authors == ["Ada Marsh"]
    assert ferry.language == "en-gb" and ferry.origin == url
    assert items[1].authors == ["Tom Reed"]
    assert items[3].url == feed_server.url("2026/01/lighthouse")  # relative link resolved against the feed
    report = result.metadata["sources"][0]
    assert report == {
        "source": url,
        "via": "rss",
        "status": "ok",
        "items": 4,
        "title": "Harbour Gazette",
        "skipped_entries": 1,
        "elapsed_ms": report["elapsed_ms"],
    }
    assert result.metadata["source_errors"] == {}
    assert result.metadata["step_type"] == "news_gathering"
    assert feed_server.requests[0]["user-agent"].startswith("flow-engine-news/")


async def test_parses_atom_feed(feed_server: FeedServer) -> None:
    result = await NewsStep().execute({"sources": [feed_server.url("atom.xml")]})
    turbines, seagrass = result.output_content
    assert turbines.title == "Tidal turbines & the harbour grid"
    assert turbines.url == "https://science.example.org/articles/tidal-turbines"
    assert turbines.published == datetime(2026, 3, 3, 7, 15, tzinfo=UTC)  # <published>, not <updated>
    assert turbines.authors == ["Lena Hartmann", "Omar Diaz"]
    assert turbines.source == "Coastal Science Weekly" and turbines.language == "en"
    assert seagrass.published == datetime(2026, 2, 25, 14, 0, tzinfo=UTC)  # only <updated>: used
    assert (
        seagrass.summary == "A five-year survey shows seagrass returning to the bay."
    )  # <content>, no script


async def test_merges_feeds_dedups_orders_and_caps(feed_server: FeedServer) -> None:
    sources = [feed_server.url("rss.xml"), feed_server.url("atom.xml"), feed_server.url("duplicates.xml")]
    result = await NewsStep().execute({"sources": sources, "max_items": 5})
    items = result.output_content
    assert [i.title for i in items] == [
        "Tidal turbines & the harbour grid",  # 2026-03-03 07:15
        "Harbour festival dates announced",  # 2026-03-03 07:00
        "Solar ferry enters service on the harbour route",  # 2026-03-02
        "Council approves new sea wall budget",  # 2026-03-01
        "Seagrass meadows recover faster than expected",  # 2026-02-25
    ]
    assert len({i.url for i in items}) == 5
    ferry = items[2]
    assert ferry.source == "Harbour Gazette"  # first source listed wins; the wire's copy was merged in
    counts = result.metadata["counts"]
    assert counts["fetched"] == 9 and counts["duplicates"] == 2 and counts["over_cap"] == 2
    assert counts["returned"] == 5


async def test_query_and_date_filters(feed_server: FeedServer) -> None:
    sources = [feed_server.url("rss.xml"), feed_server.url("atom.xml")]
    result = await NewsStep().execute({"sources": sources, "query": "harbour", "since": "2026-03-01"})
    assert [i.title for i in result.output_content] == [
        "Tidal turbines & the harbour grid",
        "Solar ferry enters service on the harbour route",
    ]
    counts = result.metadata["counts"]
    assert counts["too_old"] == 3 and counts["query"] == 1


async def test_duration_since_against_fresh_dates(feed_server: FeedServer) -> None:
    url = feed_server.url("recent.xml")
    day = await NewsStep().execute({"sources": [url], "since": "24h"})
    assert [i.url for i in day.output_content] == ["https://recent.example/fresh"]
    assert day.metadata["counts"]["undated"] == 1  # an undated item cannot be shown to be recent
    week = await NewsStep().execute({"sources": [url], "since": "7d"})
    assert [i.url for i in week.output_content] == [
        "https://recent.example/fresh",
        "https://recent.example/yesterday",
    ]
    everything = await NewsStep().execute({"sources": [url]})
    assert [i.url for i in everything.output_content][-1] == "https://recent.example/undated"


async def test_language_filter_uses_declared_feed_language(feed_server: FeedServer) -> None:
    sources = [feed_server.url("rss.xml"), feed_server.url("atom.xml"), feed_server.url("duplicates.xml")]
    german = await NewsStep().execute({"sources": sources, "language": "de"})
    # rss.xml says en-gb and atom.xml says en: dropped; duplicates.xml declares nothing: kept
    assert {i.origin for i in german.output_content} == {feed_server.url("duplicates.xml")}
    english = await NewsStep().execute({"sources": sources, "language": "en-US"})
    assert german.metadata["counts"]["language"] == 6 and english.metadata["counts"]["language"] == 0


async def test_one_failing_source_is_reported_not_fatal(feed_server: FeedServer) -> None:
    good = feed_server.url("rss.xml")
    missing = feed_server.url("status/404")
    html = feed_server.url("not_a_feed.html")
    broken = feed_server.url("broken.xml")
    result = await QuickNews().execute({"sources": [good, missing, html, broken]})
    assert len(result.output_content) == 4
    errors = result.metadata["source_errors"]
    assert set(errors) == {missing, html, broken}
    assert errors[missing] == f"HTTP 404 Not Found from {missing}"
    assert "is an HTML page, not an RSS or Atom feed" in errors[html]
    assert "is not an RSS or Atom feed (SAXParseException" in errors[broken]
    kinds = {r["source"]: r.get("kind") for r in result.metadata["sources"]}
    assert kinds == {good: None, missing: "http", html: "not_a_feed", broken: "not_a_feed"}


async def test_all_sources_failing_fails_the_step_listing_each(feed_server: FeedServer) -> None:
    html = feed_server.url("not_a_feed.html")
    refused = "http://127.0.0.1:9/feed.xml"  # nothing listens on the discard port
    with pytest.raises(NewsGatheringError) as info:
        await QuickNews().execute({"sources": [html, refused, "file:///no/such/feed.xml"]})
    message = str(info.value)
    assert message.startswith("all 3 news sources failed:\n")
    assert f"  - {html}: {html} is an HTML page" in message
    assert f"  - {refused}: cannot reach {refused}" in message
    assert "  - file:///no/such/feed.xml: no such file: /no/such/feed.xml" in message


@pytest.mark.slow
async def test_slow_feed_times_out_while_others_succeed(feed_server: FeedServer) -> None:
    slow = feed_server.url("delay/30/rss.xml")
    started = time.perf_counter()
    result = await QuickNews().execute({"sources": [slow, feed_server.url("atom.xml")]})
    elapsed = time.perf_counter() - started
    assert elapsed < 6, elapsed
    assert [i.source for i in result.output_content] == ["Coastal Science Weekly"] * 2
    assert result.metadata["source_errors"] == {slow: f"{slow} timed out after 2 s"}
    assert result.metadata["sources"][0]["kind"] == "timeout"


async def test_sources_are_fetched_concurrently(feed_server: FeedServer) -> None:
    sources = [feed_server.url(f"delay/0.4/{name}") for name in ("rss.xml", "atom.xml", "duplicates.xml")]
    started = time.perf_counter()
    result = await NewsStep().execute({"sources": sources})
    elapsed = time.perf_counter() - started
    assert result.metadata["source_errors"] == {}
    assert elapsed < 1.0, f"three 0.4 s feeds took {elapsed:.2f} s: not concurrent"


@pytest.mark.parametrize("path", ["huge.xml", "huge-stream.xml", "gzip-bomb.xml"])
async def test_size_limit(feed_server: FeedServer, path: str) -> None:
    huge = feed_server.url(path)
    result = await QuickNews().execute({"sources": [huge, feed_server.url("atom.xml")]})
    assert result.metadata["source_errors"] == {huge: f"{huge} is larger than the 100,000-byte limit"}
    assert result.metadata["sources"][0]["kind"] == "too_large"
    big_enough = type("BigNews", (NewsStep,), {"max_bytes": 3_000_000})
    if path != "gzip-bomb.xml":
        ok = await big_enough().execute({"sources": [huge], "max_items": 1000})
        assert ok.metadata["counts"]["fetched"] == 1200 and len(ok.output_content) == 1000


async def test_redirects_followed_up_to_the_cap(feed_server: FeedServer) -> None:
    two = feed_server.url("redirect/2/atom.xml")
    five = feed_server.url("redirect/5/atom.xml")
    loop = feed_server.url("loop")
    result = await QuickNews().execute({"sources": [two, five, loop]})
    assert {i.origin for i in result.output_content} == {two}
    assert result.metadata["source_errors"] == {
        five: f"{five} redirected more than 3 times",
        loop: f"{loop} redirected more than 3 times",
    }


async def test_file_sources_absolute_relative_and_limits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    feed = tmp_path / "my feeds" / "atom.xml"
    feed.parent.mkdir()
    feed.write_bytes((FIXTURES / "atom.xml").read_bytes())
    absolute = feed.as_uri()  # file:///.../my%20feeds/atom.xml
    result = await NewsStep().execute({"sources": [absolute]})
    assert result.output_content[0].title == "Tidal turbines & the harbour grid"

    monkeypatch.chdir(tmp_path)
    relative = await NewsStep().execute({"sources": ["file:my%20feeds/atom.xml"]})
    assert len(relative.output_content) == 2

    (tmp_path / "big.xml").write_bytes(b"<rss>" + b" " * 200_000 + b"</rss>")
    folder = tmp_path.as_uri()
    bad_host = "file://feeds/atom.xml"
    outcome = await QuickNews().execute({"sources": [absolute, "file:big.xml", folder, bad_host]})
    errors = outcome.metadata["source_errors"]
    assert errors["file:big.xml"] == "file:big.xml is larger than the 100,000-byte limit"
    assert errors[folder] == f"{tmp_path} is a folder, not a feed file"
    assert "file URLs take an absolute path with three slashes" in errors[bad_host]


async def test_unknown_source_name_is_an_input_error() -> None:
    with pytest.raises(InputValidationError) as info:
        await NewsStep().execute({"sources": ["hackernews"]})
    assert "sources: Value error, unknown news source 'hackernews' (registered: ddgs, rss)" in str(info.value)


async def test_inside_a_flow_items_and_source_errors_are_recorded(feed_server: FeedServer) -> None:
    good, bad = feed_server.url("atom.xml"), feed_server.url("status/500")

    class Gather(BaseFlow):
        flow_name = "gather_only"

        async def _execute_flow_logic(self, inputs: dict) -> dict:
            result = await QuickNews().execute({"sources": [good, bad], "query": "harbour"})
            return {"titles": [i.title for i in result.output_content]}

    flow = Gather()
    outputs = await flow.execute({})
    assert outputs == {"titles": ["Tidal turbines & the harbour grid"]}
    assert flow.run_id is not None
    (step,) = get_engine().store.list_steps(flow.run_id)
    assert step.step_type == "news_gathering" and step.status == "completed"
    assert step.outputs["output_content"][0]["url"] == "https://science.example.org/articles/tidal-turbines"
    assert step.step_metadata["source_errors"] == {bad: f"HTTP 500 Internal Server Error from {bad}"}
    assert NewsStep.restore_output(step.outputs["output_content"])[0].published == datetime(
        2026, 3, 3, 7, 15, tzinfo=UTC
    )
