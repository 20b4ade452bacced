"""The data of the news step: ``NewsItem`` (what it returns) and ``NewsInputs`` (what it accepts).

Kept apart from the fetching code so flows and third-party sources can import the models without
pulling in httpx or feedparser.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, Field, field_validator

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(w|d|h|min|m|s)", re.I)
_DURATION = re.compile(r"^\s*(?:\d+(?:\.\d+)?\s*(?:w|d|h|min|m|s)\s*)+$", re.I)
_UNIT_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "min": 60, "s": 1}


def as_utc(value: datetime) -> datetime:
    """A naive datetime is taken as UTC (feeds and users rarely mean local time); aware ones convert."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def parse_duration(text: str) -> timedelta | None:
    """``24h``, ``7d``, ``2w``, ``90m``/``90min``, ``30s`` or combinations (``1d12h``); else None."""
    if not _DURATION.match(text):
        return None
    seconds = sum(float(n) * _UNIT_SECONDS[unit.lower()] for n, unit in _DURATION_PART.findall(text))
    return timedelta(seconds=seconds)


def parse_since(value: Any, *, now: datetime | None = None) -> datetime | None:
    """Turn what a user writes for ``since`` into a timezone-aware cut-off.

    Accepts a duration before now (``24h``, ``7d``, a ``timedelta``), a date (midnight UTC), a
    datetime (naive means UTC) or their ISO strings. Raises ``ValueError`` saying what is accepted.
    """
    now = now or datetime.now(UTC)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, timedelta):
        return now - value
    if isinstance(value, datetime):
        return as_utc(value)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str):
        text = value.strip()
        duration = parse_duration(text)
        if duration is not None:
            return now - duration
        try:
            return as_utc(datetime.fromisoformat(text))  # a bare date parses as its midnight
        except ValueError:
            pass
    raise ValueError(
        f"since must be a duration like 24h, 7d or 2w, or an ISO date/datetime like 2026-01-31; got {value!r}"
    )


def check_since(value: Any) -> Any:
    """Validate ``since`` but keep what the user wrote (a flow records ``7d``, the step resolves it)."""
    parse_since(value)
    return value


def _since(value: Any) -> datetime | None:
    return parse_since(value)


Since = Annotated[datetime | None, BeforeValidator(_since)]


class NewsItem(BaseModel):
    """One news item, whatever source it came from."""

    title: str = Field(..., description="Headline of the item")
    url: str = Field(..., description="Link to the item itself")
    source: str = Field("", description="Who published it: the feed's title or the site's name")
    published: datetime | None = Field(
        None,
        description="When it was published (or updated), timezone-aware; None if the source gives no date",
    )
    summary: str = Field("", description="Plain-text summary or first lines, HTML removed")
    authors: list[str] = Field(default_factory=list, description="Author names, where the source gives them")
    language: str | None = Field(None, description="Language tag the source declares (en, en-US, de...)")
    origin: str = Field("", description="The `sources` entry this item came from")

    @field_validator("published", mode="after")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return as_utc(value) if value is not None else None


class NewsInputs(BaseModel):
    """Inputs of the ``news_gathering`` step."""

    query: str = Field(
        "",
        description='Keep items mentioning every word or "quoted phrase" (-word excludes); '
        "search sources search for it. Empty keeps everything.",
    )
    sources: list[str] = Field(
        ...,
        min_length=1,
        description="Feed URLs (https://..., file:///path/feed.xml) and/or names of registered news sources",
    )
    max_items: int = Field(20, ge=1, le=1000, description="Return at most this many items, newest first")
    since: Since = Field(
        None, description="Only items published after this: a duration (24h, 7d) or an ISO date/datetime"
    )
    language: str | None = Field(
        None,
        description="Language tag (en, de, fr-FR) for sources that support it; items in another are dropped",
    )

    @field_validator("sources", mode="before")
    @classmethod
    def _one_source(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("sources", mode="after")
    @classmethod
    def _known_sources(cls, value: list[str]) -> list[str]:
        from .sources import check_entries

        return check_entries(value)
