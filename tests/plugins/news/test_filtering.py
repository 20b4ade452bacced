"""Dedup, query and date filtering, ordering and the cap, on items built in code."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from flow_engine.plugins.news import NewsItem
from flow_engine.plugins.news.filtering import Query, deduplicate, normalize_url, select
from flow_engine.plugins.news.text import html_to_text, normalize_title

T0 = datetime(2026, 3, 3, 12, 0, tzinfo=UTC)


def item(
    title: str, url: str, hours_ago: float | None = 0, summary: str = "", origin: str = "feed", **kw
) -> NewsItem:
    published = None if hours_ago is None else T0 - timedelta(hours=hours_ago)
    return NewsItem(title=title, url=url, published=published, summary=summary, origin=origin, **kw)


@pytest.mark.parametrize(
    "variant",
    [
        "https://news.example.com/a/story",
        "http://news.example.com/a/story",
        "https://www.news.example.com/a/story/",
        "HTTPS://NEWS.example.com:443/a/story#comments",
        "https://news.example.com/a/story?utm_source=rss&utm_medium=feed&fbclid=abc",
        "https://news.example.com//a/story",
    ],
)
def test_url_variants_normalise_to_one_identity(variant: str) -> None:
    assert normalize_url(variant) == normalize_url("https://news.example.com/a/story")


def test_meaningful_url_differences_survive_normalisation() -> None:
    assert normalize_url("https://x.example/story?id=1") != normalize_url("https://x.example/story?id=2")
    assert normalize_url("https://x.example/story?b=2&a=1") == normalize_url(
        "https://x.example/story?a=1&b=2"
    )
    assert normalize_url("https://x.example:8443/a") != normalize_url("https://x.example/a")
    assert normalize_url("https://x.example/A") != normalize_url(
        "https://x.example/a"
    )  # paths are case-sensitive
    assert normalize_url("not a url at all") == "not a url at all"
    assert normalize_url("http://[broken") == "http://[broken"


def test_titles_normalise_case_punctuation_accents_and_spacing() -> None:
    assert normalize_title("  Café  opens — “at last”! ") == normalize_title("CAFE OPENS AT LAST")
    assert normalize_title("Sea-wall budget") == normalize_title("sea wall budget")
    assert normalize_title("!!!") == ""


def test_dedup_by_url_or_title_keeps_first_and_merges_missing_fields() -> None:
    first = item("Solar ferry enters service", "https://a.example/ferry", hours_ago=None, origin="a")
    same_url = item(
        "Ferry story, other headline",
        "http://www.a.example/ferry/",
        hours_ago=2,
        summary="longer text",
        authors=["Ada"],
        origin="b",
    )
    same_title = item("SOLAR FERRY ENTERS SERVICE!", "https://b.example/x", hours_ago=3, origin="c")
    other = item("Something else", "https://c.example/y", hours_ago=1)
    untitled_a = item("", "https://d.example/1")
    untitled_b = item("", "https://d.example/2")  # empty titles are never "the same title"
    kept, removed = deduplicate([first, same_url, same_title, other, untitled_a, untitled_b])
    assert removed == 2
    assert [k.url for k in kept] == [
        "https://a.example/ferry",
        "https://c.example/y",
        "https://d.example/1",
        "https://d.example/2",
    ]
    merged = kept[0]
    assert merged.title == "Solar ferry enters service" and merged.origin == "a"
    assert merged.published == T0 - timedelta(hours=2)  # first copy had no date: took the duplicate's
    assert merged.summary == "longer text" and merged.authors == ["Ada"]


def test_query_matches_whole_words_phrases_and_exclusions() -> None:
    ferry = item("Solar ferry enters service", "u1", summary="The harbour's first électric boat")
    assert Query.parse("ferry").matches(ferry)
    assert Query.parse("FERRY solar").matches(ferry)  # every word, any case, any order
    assert Query.parse("ferries").matches(ferry) is False
    assert Query.parse("ferry").matches(item("Ferries return", "u")) is False
    assert Query.parse("boat").matches(item("Boats return", "u"))  # a plural is forgiven
    assert Query.parse("electric").matches(ferry)  # accents fold
    assert Query.parse('"solar ferry"').matches(ferry)
    assert Query.parse('"ferry solar"').matches(ferry) is False
    assert Query.parse("ferry -solar").matches(ferry) is False
    assert Query.parse("ai").matches(item("Minister said nothing", "u")) is False  # no substring matches
    assert Query.parse("ai").matches(item("AI rules agreed", "u"))
    assert not Query.parse("   ")


def test_select_filters_orders_newest_first_and_caps() -> None:
    items = [
        item("Harbour ferry delayed", "u1", hours_ago=5),
        item("Harbour festival", "u2", hours_ago=1),
        item("Harbour wall", "u3", hours_ago=50),
        item("Harbour undated", "u4", hours_ago=None),
        item("Unrelated market news", "u5", hours_ago=0.5),
        item("Harbour lights", "u6", hours_ago=2),
        item("Harbour festival", "u7", hours_ago=3),  # duplicate title of u2
    ]
    everything = select(items, max_items=10)
    assert [i.url for i in everything.items] == ["u5", "u2", "u6", "u1", "u3", "u4"]  # undated last
    assert everything.stats["duplicates"] == 1

    chosen = select(items, query="harbour", since=T0 - timedelta(hours=24), max_items=2)
    assert [i.url for i in chosen.items] == ["u2", "u6"]
    assert chosen.stats == {
        "fetched": 7,
        "duplicates": 1,
        "language": 0,
        "undated": 1,
        "too_old": 1,
        "query": 1,
        "over_cap": 1,
        "returned": 2,
    }


def test_select_by_language_and_query_exemption() -> None:
    items = [
        item("Harbour news", "u1", language="en-GB", origin="feed"),
        item("Hafen Nachrichten", "u2", language="de", origin="feed"),
        item("No declared language", "u3", origin="feed"),
        item("Found by a search engine", "u4", origin="search"),
    ]
    result = select(items, query="harbour", language="en", max_items=10, query_exempt=frozenset({"search"}))
    assert [i.url for i in result.items] == ["u1", "u4"]
    assert result.stats["language"] == 1 and result.stats["query"] == 1


def test_html_to_text() -> None:
    assert (
        html_to_text("<p>One <b>bold</b>&nbsp;move.</p><p>Two</p><script>x()</script>")
        == "One bold move. Two"
    )  # nbsp collapses too
    assert html_to_text("Fish &amp; chips") == "Fish & chips"
    assert html_to_text(None) == ""
    long = "word " * 100
    cut = html_to_text(long, limit=22)
    assert cut.endswith("…") and len(cut) <= 23
