"""From everything the sources returned to the list the step returns: dedup, filter, order, cap.

Order matters: duplicates are merged first (a copy with a summary can make the query match), then
items are filtered by language, date and query, sorted newest first and cut at ``max_items``. The
counts of each stage go into the step's metadata so an empty result can be explained.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .models import NewsItem
from .text import fold, normalize_title

# query parameters that only say who sent the reader, never which story it is
_TRACKING_PARAMS = {
    "fbclid",
    "gclid",
    "dclid",
    "gclsrc",
    "msclkid",
    "yclid",
    "igshid",
    "mc_cid",
    "mc_eid",
    "_hsenc",
    "_hsmi",
    "mkt_tok",
    "ref_src",
    "ref_url",
    "ocid",
    "cmpid",
    "smid",
    "sr_share",
    "spm",
    "guccounter",
}
_QUERY_TERM = re.compile(r'(-?)"([^"]+)"|(-?)(\S+)')


def normalize_url(url: str) -> str:
    """A URL's identity: http/https, ``www.``, default ports, fragments, trailing slashes, tracking
    parameters and parameter order do not make a different story."""
    text = url.strip()
    try:
        parts = urlsplit(text)
        host = (parts.hostname or "").lower().removeprefix("www.")
        port = parts.port
    except ValueError:
        return text.lower()
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        scheme = "http"
        if port in (80, 443):
            port = None
    netloc = f"{host}:{port}" if port else host
    path = re.sub(r"/{2,}", "/", parts.path or "/")
    if len(path) > 1:
        path = path.rstrip("/")
    query = sorted(
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if not k.lower().startswith("utm_") and k.lower() not in _TRACKING_PARAMS
    )
    return urlunsplit((scheme, netloc, path, urlencode(query), ""))


def merge(kept: NewsItem, other: NewsItem) -> NewsItem:
    """Fill what the kept copy lacks from a duplicate (a date, a summary, authors, a language)."""
    updates: dict[str, Any] = {}
    if kept.published is None and other.published is not None:
        updates["published"] = other.published
    if len(other.summary) > len(kept.summary):
        updates["summary"] = other.summary
    if not kept.authors and other.authors:
        updates["authors"] = other.authors
    if kept.language is None and other.language:
        updates["language"] = other.language
    return kept.model_copy(update=updates) if updates else kept


def deduplicate(items: list[NewsItem]) -> tuple[list[NewsItem], int]:
    """Keep the first copy of each story (same normalised URL or same normalised title), in order.

    Returns the kept items and how many duplicates were merged into them.
    """
    kept: list[NewsItem] = []
    by_url: dict[str, int] = {}
    by_title: dict[str, int] = {}
    removed = 0
    for item in items:
        url_key = normalize_url(item.url)
        title_key = normalize_title(item.title)
        index = by_url.get(url_key)
        if index is None and title_key:
            index = by_title.get(title_key)
        if index is not None:
            kept[index] = merge(kept[index], item)
            removed += 1
        else:
            index = len(kept)
            kept.append(item)
        by_url.setdefault(url_key, index)
        if title_key:
            by_title.setdefault(title_key, index)
    return kept, removed


@dataclass(frozen=True)
class Query:
    """Words and "quoted phrases" an item must all contain; ``-word`` ones it must not."""

    required: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Query:
        required: list[str] = []
        excluded: list[str] = []
        for neg_phrase, phrase, neg_word, word in _QUERY_TERM.findall(text or ""):
            term = fold(phrase or word).strip()
            if not term or term == "-":
                continue
            (excluded if (neg_phrase or neg_word) else required).append(term)
        return cls(tuple(required), tuple(excluded))

    def __bool__(self) -> bool:
        return bool(self.required or self.excluded)

    @staticmethod
    def _contains(haystack: str, term: str) -> bool:
        # whole words only: "ai" must not match "said"; a trailing "s" is forgiven ("robot" ~ "robots")
        pattern = r"(?<!\w)" + re.escape(term) + r"(?:s|es)?(?!\w)"
        return re.search(pattern, haystack) is not None

    def matches(self, item: NewsItem) -> bool:
        haystack = fold(" ".join([item.title, item.summary, *item.authors]))
        if any(self._contains(haystack, term) for term in self.excluded):
            return False
        return all(self._contains(haystack, term) for term in self.required)


def _primary_language(tag: str) -> str:
    return tag.strip().lower().replace("_", "-").split("-", 1)[0]


def language_matches(item_language: str | None, wanted: str | None) -> bool:
    """Primary subtags compare: ``en-US`` matches ``en``; an item that declares nothing is kept."""
    if not wanted or not item_language:
        return True
    return _primary_language(item_language) == _primary_language(wanted)


def _newest_first(pair: tuple[int, NewsItem]) -> tuple[bool, float, int]:
    """Sort key: dated items newest first, undated ones last; ties keep the sources' order."""
    position, item = pair
    return (item.published is None, -item.published.timestamp() if item.published else 0.0, position)


@dataclass
class Selection:
    """The selected items and what each stage did."""

    items: list[NewsItem]
    stats: dict[str, int] = field(default_factory=dict)


def select(
    items: list[NewsItem],
    *,
    query: str = "",
    since: datetime | None = None,
    language: str | None = None,
    max_items: int,
    query_exempt: frozenset[str] = frozenset(),
) -> Selection:
    """Dedup, filter, order and cap. Items whose ``origin`` is in ``query_exempt`` came from a source
    that already searched for the query and are not filtered by it again."""
    unique, duplicates = deduplicate(items)
    parsed_query = Query.parse(query)
    stats = {
        "fetched": len(items),
        "duplicates": duplicates,
        "language": 0,
        "undated": 0,
        "too_old": 0,
        "query": 0,
    }
    kept: list[tuple[int, NewsItem]] = []
    for position, item in enumerate(unique):
        if not language_matches(item.language, language):
            stats["language"] += 1
        elif since is not None and item.published is None:
            stats["undated"] += 1  # cannot be shown to be recent
        elif since is not None and item.published is not None and item.published < since:
            stats["too_old"] += 1
        elif parsed_query and item.origin not in query_exempt and not parsed_query.matches(item):
            stats["query"] += 1
        else:
            kept.append((position, item))
    kept.sort(key=_newest_first)
    selected = [item for _, item in kept[:max_items]]
    stats["over_cap"] = max(0, len(kept) - max_items)
    stats["returned"] = len(selected)
    return Selection(selected, stats)
