"""The news source contract and the registry built from the ``register_news_sources`` hook.

A source is any object with ``async def fetch(request: NewsRequest) -> list[NewsItem | dict]``. Entries
of the step's ``sources`` input are resolved here: a URL goes to the source that claims its scheme,
anything else must be the name of a registered source. Resolution is strict (a typo is an input error,
not a silently empty source) so that partial success never hides a mistake.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from flow_engine.plugin import FlowEngineError, PluginConflictError

if TYPE_CHECKING:  # pragma: no cover
    from .hookspecs import NewsSourceInfo
    from .models import NewsItem

USER_AGENT = "flow-engine-news/0.1 (+https://pypi.org/project/flow-engine/)"


class NewsSourceError(FlowEngineError):
    """A source could not deliver. ``kind`` says why in one word (timeout, too_large, not_a_feed...).

    The step reports it per source in its metadata; only when every source fails does the step fail.
    """

    kind = "error"

    def __init__(self, message: str, kind: str | None = None):
        super().__init__(message)
        if kind is not None:
            self.kind = kind


class NewsSourceUnavailable(NewsSourceError):
    """The source cannot work in this installation (a missing optional package, say)."""

    kind = "unavailable"


class NewsGatheringError(FlowEngineError):
    """Every source of a news step failed; the message lists each source and why."""

    def __init__(self, failures: list[tuple[str, str]]):
        self.failures = failures
        lines = [f"all {len(failures)} news source{'s' if len(failures) != 1 else ''} failed:"]
        lines += [f"  - {entry}: {message}" for entry, message in failures]
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class NewsRequest:
    """What a source is asked for. Limits are the step's; sources doing HTTP should honour them."""

    entry: str  # the ``sources`` entry as written: a URL, or the source's name
    query: str
    since: datetime | None
    language: str | None
    max_items: int
    timeout: float
    max_bytes: int
    max_redirects: int
    user_agent: str = USER_AGENT


@dataclass
class NewsBatch:
    """What ``fetch`` may return instead of a bare list, to say more: a display title, warnings
    (shown in the step's metadata) and how many entries were skipped as unusable."""

    items: list[NewsItem | dict[str, Any]]
    title: str | None = None
    warnings: list[str] = field(default_factory=list)
    skipped: int = 0


class NewsSource(Protocol):
    """What ``NewsSourceInfo.factory()`` returns."""

    async def fetch(self, request: NewsRequest) -> list[NewsItem | dict[str, Any]] | NewsBatch: ...


@dataclass(frozen=True)
class SourceRegistry:
    """Registered sources by name and by the URL schemes they handle."""

    by_name: dict[str, NewsSourceInfo]
    by_scheme: dict[str, NewsSourceInfo]

    def resolve(self, entry: str) -> NewsSourceInfo:
        """The source that serves ``entry``; ``ValueError`` with a hint if none does."""
        text = entry.strip()
        if not text:
            raise ValueError("empty source entry")
        scheme = urlsplit(text).scheme.lower() if ":" in text else ""
        if scheme and (text.lower().startswith(f"{scheme}://") or scheme == "file"):
            info = self.by_scheme.get(scheme)
            if info is None:
                handled = ", ".join(f"{s}://" for s in sorted(self.by_scheme)) or "none"
                raise ValueError(f"no news source handles {scheme}:// URLs (handled: {handled})")
            return info
        info = self.by_name.get(text)
        if info is not None:
            return info
        if "/" in text or "\\" in text or text.lower().endswith((".xml", ".rss", ".atom")):
            raise ValueError(
                f"'{text}' looks like a file path; write it as a URL: file:///absolute/path.xml "
                "or file:relative/path.xml"
            )
        names = ", ".join(sorted(self.by_name)) or "none"
        raise ValueError(f"unknown news source '{text}' (registered: {names}); or give a feed URL")


def registry() -> SourceRegistry:
    """Build the registry from the loaded plugins. Two plugins claiming one name or one URL scheme is
    one ``PluginConflictError`` naming both."""
    from flow_engine.plugin import get_engine

    by_name = get_engine().plugins.collect_named("register_news_sources", "news source")
    by_scheme: dict[str, NewsSourceInfo] = {}
    for info in by_name.values():
        for scheme in info.url_schemes:
            key = scheme.lower().removesuffix("://")
            other = by_scheme.get(key)
            if other is not None and other.plugin != info.plugin:
                raise PluginConflictError(
                    f"URL scheme '{key}://' for news sources is claimed by two plugins: '{other.plugin}' "
                    f"(source '{other.name}') and '{info.plugin}' (source '{info.name}'); uninstall one or "
                    "disable it with FLOW_ENGINE_DISABLE_PLUGINS"
                )
            by_scheme[key] = info
    return SourceRegistry(by_name, by_scheme)


def check_entries(entries: list[str]) -> list[str]:
    """Validate ``sources`` entries against the registry (used by the step's and flows' ``Inputs``).

    Returns the entries stripped and without repeats; raises ``ValueError`` naming every bad entry.
    """
    reg = registry()
    problems: list[str] = []
    cleaned: list[str] = []
    for entry in entries:
        try:
            reg.resolve(entry)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        if entry.strip() not in cleaned:
            cleaned.append(entry.strip())
    if problems:
        raise ValueError("; ".join(problems))
    return cleaned
