"""The built-in ``rss`` news source: RSS 0.9x/1.0/2.0 and Atom feeds, fetched by us, parsed by feedparser.

feedparser is given the bytes (wrapped in ``BytesIO``: a bare string or bytes would make it open URLs
or files on its own) plus the final URL and content type, so relative links and encodings resolve as
if it had fetched the feed. A document that is not a feed is a clear error, not zero items.
"""

from __future__ import annotations

import asyncio
import calendar
import io
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .fetch import Document, fetch_document
from .models import NewsItem
from .sources import NewsBatch, NewsRequest, NewsSourceError
from .text import html_to_text

SUMMARY_CHARS = 1000


@dataclass
class ParsedFeed:
    """What a feed document yielded: its title and language, the items, and any parser complaint."""

    title: str
    language: str | None
    items: list[NewsItem]
    warning: str | None = None
    skipped: int = 0


class RssSource:
    """Fetches one feed URL (the ``sources`` entry itself) and returns its items."""

    async def fetch(self, request: NewsRequest) -> NewsBatch:
        if "://" not in request.entry and not request.entry.lower().startswith("file:"):
            raise NewsSourceError(
                "the rss source takes the feed's URL itself in `sources`, e.g. https://example.com/feed.xml "
                "or file:///path/feed.xml",
                kind="bad_url",
            )
        document = await fetch_document(request.entry, request)
        parsed = await asyncio.to_thread(parse_feed, document, request.entry)
        warnings = [parsed.warning] if parsed.warning else []
        return NewsBatch(list(parsed.items), title=parsed.title, warnings=warnings, skipped=parsed.skipped)


def _is_html(document: Document) -> bool:
    kind = (document.content_type or "").lower()
    head = document.data[:512].lstrip().lower()
    return "html" in kind or head.startswith((b"<!doctype html", b"<html"))


def _struct_to_datetime(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromtimestamp(calendar.timegm(value), tz=UTC)
    except (OverflowError, ValueError, TypeError):
        return None


def _authors(entry: Any) -> list[str]:
    names: list[str] = []
    for author in entry.get("authors") or []:
        name = (author.get("name") or author.get("email") or "").strip() if isinstance(author, dict) else ""
        if name and name not in names:
            names.append(name)
    if not names and entry.get("author"):
        names.append(str(entry["author"]).strip())
    return names


def _link(entry: Any) -> str | None:
    link = entry.get("link")
    if link:
        return str(link).strip()
    for candidate in entry.get("links") or []:
        if candidate.get("href") and candidate.get("rel", "alternate") == "alternate":
            return str(candidate["href"]).strip()
    guid = str(entry.get("id") or "")
    return guid if guid.startswith(("http://", "https://")) else None


def _entry_language(entry: Any, feed_language: str | None) -> str | None:
    detail = entry.get("title_detail") or {}
    return detail.get("language") or feed_language or None


def parse_feed(document: Document, origin: str) -> ParsedFeed:
    """Parse a fetched document. Raises ``NewsSourceError(kind="not_a_feed")`` when it is no feed."""
    import feedparser

    parsed = feedparser.parse(
        io.BytesIO(document.data),
        response_headers={
            "content-location": document.url,
            "content-type": document.content_type or "application/xml",
        },
    )
    where = origin
    if not parsed.get("version") and not parsed.entries:
        if _is_html(document):
            raise NewsSourceError(
                f"{where} is an HTML page, not an RSS or Atom feed (the page's "
                '<link rel="alternate" type="application/rss+xml"> usually names its feed)',
                kind="not_a_feed",
            )
        if not document.data.strip():
            raise NewsSourceError(f"{where} is empty, not a feed", kind="not_a_feed")
        problem = parsed.get("bozo_exception")
        detail = f" ({type(problem).__name__}: {problem})" if problem else ""
        raise NewsSourceError(f"{where} is not an RSS or Atom feed{detail}", kind="not_a_feed")
    feed = parsed.get("feed", {})
    title = html_to_text(feed.get("title")) or document.url
    language = feed.get("language") or (feed.get("title_detail") or {}).get("language") or None
    items: list[NewsItem] = []
    skipped = 0
    for entry in parsed.entries:
        link = _link(entry)
        entry_title = html_to_text(entry.get("title"))
        summary_html = entry.get("summary") or ""
        if not summary_html and entry.get("content"):
            summary_html = entry["content"][0].get("value", "")
        summary = html_to_text(summary_html, limit=SUMMARY_CHARS)
        if not link or not (entry_title or summary):
            skipped += 1
            continue
        items.append(
            NewsItem(
                title=entry_title or html_to_text(summary, limit=80),
                url=link,
                source=title,
                published=_struct_to_datetime(entry.get("published_parsed") or entry.get("updated_parsed")),
                summary=summary,
                authors=_authors(entry),
                language=_entry_language(entry, language),
                origin=origin,
            )
        )
    warning = None
    if parsed.get("bozo") and parsed.get("bozo_exception") is not None:
        exc = parsed["bozo_exception"]
        # encoding overrides are routine; only malformed XML is worth telling
        if "CharacterEncoding" not in type(exc).__name__ and "NonXMLContentType" not in type(exc).__name__:
            warning = f"feed is not well-formed ({type(exc).__name__}: {exc}); read {len(items)} items anyway"
    return ParsedFeed(title, language, items, warning, skipped)
