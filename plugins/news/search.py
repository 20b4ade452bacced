"""The optional ``ddgs`` news source: web news search through the ``ddgs`` package (DuckDuckGo, Bing...).

``ddgs`` is an extra (``pip install 'flow-engine[search]'``), imported only when a search runs, so a
missing or broken install never stops the plugin from loading; the source then reports itself
unavailable, per source, like any other failure. ``ddgs`` is synchronous: it runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import importlib.util
import math
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from .models import NewsItem
from .sources import NewsRequest, NewsSourceError, NewsSourceUnavailable
from .text import html_to_text

INSTALL_HINT = "pip install 'flow-engine[search]'"


def ddgs_installed() -> bool:
    """Cheap check (no import) for ``flow plugins`` and the source's description."""
    if "ddgs" in sys.modules:
        return sys.modules["ddgs"] is not None
    try:
        return importlib.util.find_spec("ddgs") is not None
    except (ImportError, ValueError):
        return False


def region_for(language: str | None) -> str:
    """ddgs regions are ``country-language`` (``us-en``, ``de-de``); ``wt-wt`` means no region.

    ``en`` maps to ``us-en``, another bare language ``xx`` to ``xx-xx``, a tag ``fr-CA`` to ``ca-fr``.
    """
    if not language:
        return "wt-wt"
    tag = language.strip().lower().replace("_", "-")
    if "-" in tag:
        lang, country = tag.split("-", 1)
        return f"{country}-{lang}"
    return "us-en" if tag == "en" else f"{tag}-{tag}"


def timelimit_for(since: datetime | None, now: datetime) -> str | None:
    """The narrowest ddgs time window (day, week, month, year) that still covers ``since``."""
    if since is None:
        return None
    age = now - since
    for limit, span in (
        ("d", timedelta(days=1)),
        ("w", timedelta(weeks=1)),
        ("m", timedelta(days=31)),
        ("y", timedelta(days=366)),
    ):
        if age <= span:
            return limit
    return None


def _parse_date(value: Any) -> datetime | None:
    if not value:
        return None
    if isinstance(value, datetime):
        return value
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, tz=UTC)
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def to_item(result: dict[str, Any], origin: str) -> NewsItem | None:
    """One ddgs news result (``date``, ``title``, ``body``, ``url``, ``source``) as a ``NewsItem``."""
    url = str(result.get("url") or result.get("href") or "").strip()
    title = html_to_text(str(result.get("title") or ""))
    if not url or not title:
        return None
    return NewsItem(
        title=title,
        url=url,
        source=str(result.get("source") or ""),
        published=_parse_date(result.get("date")),
        summary=html_to_text(str(result.get("body") or ""), limit=1000),
        language=None,  # ddgs does not say; the region asked for is the best hint
        origin=origin,
    )


class DdgsNewsSource:
    """Searches the web's news for the request's query."""

    async def fetch(self, request: NewsRequest) -> list[NewsItem]:
        try:
            from ddgs import DDGS
        except ImportError as exc:
            raise NewsSourceUnavailable(
                f"web news search needs the 'ddgs' package, which is not installed ({exc}); {INSTALL_HINT}"
            ) from None
        if not request.query.strip():
            raise NewsSourceError("web news search needs a query", kind="bad_request")
        params = {
            "region": region_for(request.language),
            "safesearch": "moderate",
            "timelimit": timelimit_for(request.since, datetime.now(UTC)),
            "max_results": request.max_items,
        }

        def search() -> list[dict[str, Any]]:
            client = DDGS(timeout=max(1, math.ceil(request.timeout)))
            return list(client.news(request.query, **params) or [])

        try:
            results = await asyncio.to_thread(search)
        except Exception as exc:
            if "no results" in str(exc).lower():  # some ddgs versions raise instead of returning []
                return []
            raise NewsSourceError(
                f"web news search failed: {type(exc).__name__}: {exc}", kind="search"
            ) from None
        items = [to_item(result, request.entry) for result in results if isinstance(result, dict)]
        return [item for item in items if item is not None]
