"""News sources as plugins: a third-party source through the hook, conflicts, and the optional ddgs source."""

from __future__ import annotations

import sys
import types
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from flow_engine.engine import get_engine
from flow_engine.errors import PluginConflictError
from flow_engine.plugin import hookimpl
from flow_engine.plugin_types import NewsSourceInfo
from flow_engine.plugins.news import (
    NewsBatch,
    NewsGatheringError,
    NewsItem,
    NewsRequest,
    NewsSourceError,
    NewsStep,
)
from flow_engine.plugins.news.search import region_for, timelimit_for, to_item
from flow_engine.plugins.news.sources import registry

from .conftest import FeedServer

NOW = datetime.now(UTC)


class Almanac:
    """A third-party source: a fixed list, filtered by what it is asked; records the requests it got."""

    requests: list[NewsRequest] = []

    async def fetch(self, request: NewsRequest) -> Any:
        Almanac.requests.append(request)
        return NewsBatch(
            [
                NewsItem(
                    title="Almanac: harbour tides table",
                    url="https://almanac.example/tides",
                    published=NOW - timedelta(hours=2),
                ),
                {
                    "title": "Almanac: moon phases",
                    "url": "https://almanac.example/moon",
                    "published": (NOW - timedelta(hours=1)).isoformat(),
                    "authors": ["Old Moore"],
                },
                {"title": "no url, so not an item"},
            ],
            title="The Almanac",
            warnings=["served from cache"],
        )


class AlmanacPlugin:
    @hookimpl
    def register_news_sources(self, register: Any) -> None:
        register(NewsSourceInfo("almanac", Almanac, "a fixed almanac"))


@pytest.fixture
def almanac() -> Any:
    Almanac.requests = []
    get_engine().plugins.register(AlmanacPlugin(), name="almanac_plugin")
    yield Almanac
    get_engine().plugins.unregister("almanac_plugin")


async def test_third_party_source_registered_through_the_hook(almanac: Any, feed_server: FeedServer) -> None:
    assert registry().by_name["almanac"].plugin == "almanac_plugin"
    atom = feed_server.url("atom.xml")
    result = await NewsStep().execute(
        {"sources": ["almanac", atom], "query": "harbour", "since": "1d", "language": "en", "max_items": 7}
    )
    assert [i.url for i in result.output_content] == ["https://almanac.example/tides"]  # query, then date
    (request,) = almanac.requests
    assert request.entry == "almanac" and request.query == "harbour" and request.language == "en"
    assert request.max_items == 7 and request.since is not None and request.timeout == NewsStep.timeout
    report = result.metadata["sources"][0]
    assert report["via"] == "almanac" and report["title"] == "The Almanac" and report["items"] == 2
    assert report["skipped_entries"] == 1
    assert report["warnings"][0] == "served from cache"
    assert report["warnings"][1].startswith("1 item(s) were not valid news items and were skipped")
    everything = await NewsStep().execute({"sources": ["almanac"]})
    moon = everything.output_content[0]
    assert moon.title == "Almanac: moon phases" and moon.authors == ["Old Moore"] and moon.origin == "almanac"
    assert get_engine().plugins.provides()["almanac_plugin"]["news sources"] == ["almanac"]


async def test_a_raising_third_party_source_is_only_its_own_failure(feed_server: FeedServer) -> None:
    class Flaky:
        async def fetch(self, request: NewsRequest) -> list[NewsItem]:
            raise KeyError("boom")

    class Clean:
        async def fetch(self, request: NewsRequest) -> list[NewsItem]:
            raise NewsSourceError("the service is down for maintenance", kind="maintenance")

    class Plugin:
        @hookimpl
        def register_news_sources(self, register: Any) -> None:
            register(NewsSourceInfo("flaky", Flaky))
            register(NewsSourceInfo("clean", Clean))

    get_engine().plugins.register(Plugin(), name="flaky_plugin")
    atom = feed_server.url("atom.xml")
    result = await NewsStep().execute({"sources": ["flaky", "clean", atom]})
    assert len(result.output_content) == 2
    assert result.metadata["source_errors"] == {
        "flaky": "KeyError: 'boom'",
        "clean": "the service is down for maintenance",
    }
    assert [r.get("kind") for r in result.metadata["sources"]] == ["error", "maintenance", None]
    with pytest.raises(NewsGatheringError, match="all 2 news sources failed"):
        await NewsStep().execute({"sources": ["flaky", "clean"]})


async def test_a_plugin_source_for_a_url_scheme() -> None:
    class Gopher:
        async def fetch(self, request: NewsRequest) -> list[dict[str, Any]]:
            return [{"title": f"from {request.entry}", "url": "https://gopher.example/1"}]

    class Plugin:
        @hookimpl
        def register_news_sources(self, register: Any) -> None:
            register(NewsSourceInfo("gopher", Gopher, url_schemes=("gopher",)))

    get_engine().plugins.register(Plugin(), name="gopher_plugin")
    result = await NewsStep().execute({"sources": ["gopher://hole.example/news"]})
    assert result.output_content[0].title == "from gopher://hole.example/news"


def test_two_plugins_claiming_one_source_name_is_one_clear_error() -> None:
    class Impostor:
        @hookimpl
        def register_news_sources(self, register: Any) -> None:
            register(NewsSourceInfo("rss", Almanac))

    get_engine().plugins.register(Impostor(), name="impostor")
    with pytest.raises(PluginConflictError) as info:
        registry()
    assert str(info.value).startswith("news source 'rss' is registered by two plugins: ")
    assert "'news'" in str(info.value) and "'impostor'" in str(info.value)


def test_two_plugins_claiming_one_url_scheme_is_one_clear_error() -> None:
    class Other:
        @hookimpl
        def register_news_sources(self, register: Any) -> None:
            register(NewsSourceInfo("webfeeds", Almanac, url_schemes=("https",)))

    get_engine().plugins.register(Other(), name="webfeeds_plugin")
    with pytest.raises(PluginConflictError) as info:
        registry()
    assert str(info.value) == (
        "URL scheme 'https://' for news sources is claimed by two plugins: 'news' (source 'rss') and "
        "'webfeeds_plugin' (source 'webfeeds'); uninstall one or disable it with FLOW_ENGINE_DISABLE_PLUGINS"
    )


def test_builtin_sources_listed_and_news_plugin_loads_without_ddgs(no_ddgs: None) -> None:
    plugins = get_engine().plugins
    status = next(s for s in plugins.statuses if s.name == "news")
    assert status.status == "loaded", status.error
    assert plugins.provides()["news"] == {
        "step types": ["news_gathering"],
        "news sources": [
            "rss",
            "ddgs (unavailable: the ddgs package is not installed: pip install 'flow-engine[search]')",
        ],
    }
    assert "news_gathering" in plugins.step_types()


@pytest.fixture
def no_ddgs(monkeypatch: pytest.MonkeyPatch) -> None:
    """ddgs is not installed in the test environment; make sure even if it were."""
    monkeypatch.setitem(sys.modules, "ddgs", None)  # None in sys.modules makes the import fail


async def test_ddgs_unavailable_is_reported_per_source(no_ddgs: None, feed_server: FeedServer) -> None:
    atom = feed_server.url("atom.xml")
    result = await NewsStep().execute({"sources": ["ddgs", atom], "query": "harbour"})
    assert len(result.output_content) == 1
    error = result.metadata["source_errors"]["ddgs"]
    assert error.startswith("web news search needs the 'ddgs' package, which is not installed")
    assert error.endswith("pip install 'flow-engine[search]'")
    assert result.metadata["sources"][0]["kind"] == "unavailable"
    with pytest.raises(NewsGatheringError) as info:
        await NewsStep().execute({"sources": ["ddgs"], "query": "harbour"})
    assert str(info.value).startswith("all 1 news source failed:\n  - ddgs: web news search needs the 'ddgs'")


def test_ddgs_is_marked_available_once_installed(fake_ddgs: list[dict[str, Any]]) -> None:
    assert registry().by_name["ddgs"].unavailable is None
    assert "ddgs" in get_engine().plugins.provides()["news"]["news sources"]


@pytest.fixture
def fake_ddgs(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """A stand-in ``ddgs`` module (the real one would go to the internet): records the calls it gets."""
    calls: list[dict[str, Any]] = []

    class DDGS:
        def __init__(self, timeout: int | None = None, **kwargs: Any) -> None:
            self.timeout = timeout

        def news(self, query: str, **kwargs: Any) -> list[dict[str, Any]]:
            calls.append({"query": query, "timeout": self.timeout, **kwargs})
            if query == "nothing":
                raise RuntimeError("No results found.")
            if query == "explode":
                raise RuntimeError("ratelimited")
            return [
                {
                    "date": (NOW - timedelta(hours=3)).isoformat(),
                    "title": "Harbour <b>wins</b> award",
                    "body": "A prize.",
                    "url": "https://web.example/award",
                    "image": "",
                    "source": "Web Times",
                },
                {
                    "date": (NOW - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "title": "Port expands",
                    "body": "No query word here.",
                    "url": "https://web.example/port",
                    "source": "Port Daily",
                },
                {"date": "", "title": "", "url": "https://web.example/empty"},
            ]

    module = types.ModuleType("ddgs")
    module.DDGS = DDGS  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ddgs", module)
    return calls


async def test_ddgs_source_maps_results_and_is_not_filtered_by_query_again(
    fake_ddgs: list[dict[str, Any]],
) -> None:
    result = await NewsStep().execute(
        {"sources": ["ddgs"], "query": "harbour", "language": "de", "since": "3d", "max_items": 5}
    )
    award, port = result.output_content
    assert award.title == "Harbour wins award" and award.source == "Web Times" and award.origin == "ddgs"
    assert award.published == NOW - timedelta(hours=3) and award.published.tzinfo is not None
    assert port.title == "Port expands"  # the search engine matched it: not dropped by our word filter
    (call,) = fake_ddgs
    assert call == {
        "query": "harbour",
        "timeout": 15,
        "region": "de-de",
        "safesearch": "moderate",
        "timelimit": "w",
        "max_results": 5,
    }


async def test_ddgs_no_results_and_failures(fake_ddgs: list[dict[str, Any]], feed_server: FeedServer) -> None:
    atom = feed_server.url("atom.xml")
    nothing = await NewsStep().execute({"sources": ["ddgs", atom], "query": "nothing"})
    assert nothing.metadata["source_errors"] == {}
    failed = await NewsStep().execute({"sources": ["ddgs", atom], "query": "explode"})
    assert failed.metadata["source_errors"] == {"ddgs": "web news search failed: RuntimeError: ratelimited"}
    no_query = await NewsStep().execute({"sources": ["ddgs", atom]})
    assert no_query.metadata["source_errors"] == {"ddgs": "web news search needs a query"}


def test_ddgs_parameter_mapping() -> None:
    assert region_for(None) == "wt-wt"
    assert region_for("en") == "us-en"
    assert region_for("de") == "de-de"
    assert region_for("fr-CA") == "ca-fr"
    now = datetime(2026, 3, 3, tzinfo=UTC)
    assert timelimit_for(None, now) is None
    assert timelimit_for(now - timedelta(hours=20), now) == "d"
    assert timelimit_for(now - timedelta(days=6), now) == "w"
    assert timelimit_for(now - timedelta(days=20), now) == "m"
    assert timelimit_for(now - timedelta(days=200), now) == "y"
    assert timelimit_for(now - timedelta(days=800), now) is None
    assert to_item({"title": "x"}, "ddgs") is None
