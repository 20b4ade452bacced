"""The hook the news plugin adds (``register_hookspecs``), and the record it takes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flow_engine.plugin import hookspec


@dataclass(frozen=True)
class NewsSourceInfo:
    """A news source for the ``news_gathering`` step, named in its ``sources`` input.

    ``factory()`` returns an object with ``async def fetch(request) -> list[NewsItem | dict]`` (see
    ``flow_engine.plugins.news``); it is called per fetch, so importing a heavy client can wait until
    then. ``url_schemes`` lets the source handle URL entries (``https://...``) instead of its name.
    ``searches`` means the source already searched for the query: its items are not filtered by it again.
    ``unavailable`` says why it cannot work in this installation (``flow plugins`` shows it).
    """

    name: str
    factory: Callable[[], Any]
    description: str = ""
    url_schemes: tuple[str, ...] = ()
    searches: bool = False
    unavailable: str | None = None
    plugin: str = field(default="", compare=False)


@hookspec
def register_news_sources(register: Callable[[NewsSourceInfo], None]) -> None:
    """Register news sources for the ``news_gathering`` step: ``register(NewsSourceInfo(name, factory))``.

    Users name a source in the step's ``sources`` input; ``url_schemes`` makes it handle URL entries.
    """
