"""News gathering: the ``news_gathering`` step type and its news sources (RSS/Atom feeds, web search).

Use it in a flow::

    from flow_engine.plugins.news import NewsStep

    result = await NewsStep().execute({
        "query": "climate",
        "sources": ["https://example.com/feed.xml", "file:///home/me/feed.xml", "ddgs"],
        "since": "7d",
        "max_items": 10,
    })
    result.output_content          # list[NewsItem], newest first
    result.metadata["source_errors"]  # {source: message} for the sources that failed

Sources are plugins. Built in: ``rss`` (any ``http(s)://`` or ``file:`` feed URL) and ``ddgs`` (web news
search, needs ``pip install 'flow-engine[search]'``). A third-party source::

    from flow_engine.plugin import hookimpl
    from flow_engine.plugins.news import NewsItem, NewsRequest, NewsSourceInfo

    class MySource:
        async def fetch(self, request: NewsRequest) -> list[NewsItem]:
            ...  # honour request.query / since / language / max_items / timeout where you can

    @hookimpl
    def register_news_sources(register):
        register(NewsSourceInfo("mysource", MySource, "what it searches"))

and ``sources=["mysource"]``. Raise ``NewsSourceError`` (or ``NewsSourceUnavailable``) for a clean
per-source message. This module stays cheap to import: httpx, feedparser and ddgs load on first fetch.
"""

from __future__ import annotations

from typing import Any

from flow_engine.plugin import hookimpl

from . import hookspecs
from .hookspecs import NewsSourceInfo
from .models import NewsInputs, NewsItem, parse_since
from .sources import (
    NewsBatch,
    NewsGatheringError,
    NewsRequest,
    NewsSource,
    NewsSourceError,
    NewsSourceUnavailable,
)
from .step import NEWS_GATHERING, NewsStep

__all__ = [
    "NewsBatch",
    "NewsGatheringError",
    "NewsInputs",
    "NewsItem",
    "NewsRequest",
    "NewsSource",
    "NewsSourceError",
    "NewsSourceInfo",
    "NewsSourceUnavailable",
    "NewsStep",
    "parse_since",
]


def _rss_source() -> Any:
    from .rss import RssSource

    return RssSource()


def _ddgs_source() -> Any:
    from .search import DdgsNewsSource

    return DdgsNewsSource()


@hookimpl
def register_hookspecs(register: Any) -> None:
    register(hookspecs)  # register_news_sources: other plugins add news sources


@hookimpl
def register_step_types(register: Any) -> None:
    from flow_engine.plugin import StepTypeInfo

    register(StepTypeInfo(NEWS_GATHERING, NewsStep, "news items from feeds and news sources"))


@hookimpl
def register_news_sources(register: Any) -> None:
    from .search import INSTALL_HINT, ddgs_installed

    register(
        NewsSourceInfo(
            "rss",
            _rss_source,
            "RSS and Atom feeds: put the feed's http(s):// or file: URL in sources",
            url_schemes=("http", "https", "file"),
        )
    )
    register(
        NewsSourceInfo(
            "ddgs",
            _ddgs_source,
            "web news search through the ddgs package (DuckDuckGo, Bing, ...); needs a query",
            searches=True,
            unavailable=None if ddgs_installed() else f"the ddgs package is not installed: {INSTALL_HINT}",
        )
    )
