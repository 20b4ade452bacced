"""``NewsStep``: the ``news_gathering`` step type. Fetches every source concurrently, then selects.

A source failing is normal for news (a feed is down, a site is slow), so one failure is reported in the
step's metadata and the others still count; only when every source fails does the step fail, with one
error listing each. Each source gets a hard deadline on top of httpx's own timeouts, so a server
trickling bytes cannot hold the step forever.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import ValidationError

from flow_engine.jsonable import describe_error
from flow_engine.plugin import BaseStep, StepOutput

from .filtering import select
from .hookspecs import NewsSourceInfo
from .models import NewsInputs, NewsItem
from .sources import USER_AGENT, NewsBatch, NewsGatheringError, NewsRequest, NewsSourceError, registry

NEWS_GATHERING = "news_gathering"  # the step type's name (StepType.NEWS_GATHERING)


@dataclass
class SourceOutcome:
    """One source's part of the step: its items, or why it has none."""

    entry: str
    source: str
    items: list[NewsItem] = field(default_factory=list)
    title: str | None = None
    warnings: list[str] = field(default_factory=list)
    skipped: int = 0
    error: str | None = None
    kind: str | None = None
    elapsed_ms: int = 0

    def report(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"source": self.entry, "via": self.source, "elapsed_ms": self.elapsed_ms}
        if self.error is not None:
            entry.update(status="failed", kind=self.kind, error=self.error)
        else:
            entry.update(status="ok", items=len(self.items))
            if self.title:
                entry["title"] = self.title
            if self.skipped:
                entry["skipped_entries"] = self.skipped
            if self.warnings:
                entry["warnings"] = self.warnings
        return entry


def _as_items(raw: Any, entry: str) -> NewsBatch:
    """Accept what a (possibly third-party) source returned: a list or a ``NewsBatch`` of
    ``NewsItem``s or dicts. Bad items are skipped and counted, not fatal."""
    batch = raw if isinstance(raw, NewsBatch) else NewsBatch(list(raw or []))
    items: list[NewsItem] = []
    bad: list[str] = []
    for item in batch.items:
        try:
            parsed = item if isinstance(item, NewsItem) else NewsItem.model_validate(item)
        except ValidationError as exc:
            bad.append(str(exc.errors()[0].get("msg", exc)))
            continue
        items.append(parsed if parsed.origin == entry else parsed.model_copy(update={"origin": entry}))
    warnings = list(batch.warnings)
    if bad:
        warnings.append(f"{len(bad)} item(s) were not valid news items and were skipped (first: {bad[0]})")
    return NewsBatch(items, batch.title, warnings, batch.skipped + len(bad))  # type: ignore[arg-type]


class NewsStep(BaseStep):
    """Gathers recent news items for a query from feeds and registered news sources.

    ``result.output_content`` is a list of ``NewsItem``, deduplicated, filtered by query, date and
    language, newest first, at most ``max_items``. ``result.metadata`` has ``sources`` (per source:
    status, items or error), ``source_errors`` (source -> message) and ``counts`` (what each stage kept).
    Limits per source are class attributes: ``timeout`` (seconds), ``max_bytes``, ``max_redirects``;
    ``max_concurrency`` caps simultaneous fetches. Subclass to change them.
    """

    step_type = NEWS_GATHERING
    step_name = "gather_news"
    Inputs = NewsInputs
    timeout: ClassVar[float] = 15.0
    max_bytes: ClassVar[int] = 5_000_000
    max_redirects: ClassVar[int] = 5
    max_concurrency: ClassVar[int] = 8

    async def run(self, inputs: NewsInputs) -> StepOutput:
        reg = registry()
        semaphore = asyncio.Semaphore(max(1, self.max_concurrency))

        async def gather_one(entry: str) -> SourceOutcome:
            try:
                info = reg.resolve(entry)
            except ValueError as exc:  # the plugin that validated it was unregistered since
                return SourceOutcome(entry=entry, source="", error=str(exc), kind="unknown_source")
            async with semaphore:  # waiting for a slot does not eat into the source's deadline
                return await self._fetch(entry, info, inputs)

        outcomes = await asyncio.gather(*(gather_one(entry) for entry in inputs.sources))
        failed = [o for o in outcomes if o.error is not None]
        if len(failed) == len(outcomes):
            raise NewsGatheringError([(o.entry, o.error or "") for o in failed])
        exempt = frozenset(o.entry for o in outcomes if o.source and reg.by_name[o.source].searches)
        selection = select(
            [item for o in outcomes for item in o.items],
            query=inputs.query,
            since=inputs.since,
            language=inputs.language,
            max_items=inputs.max_items,
            query_exempt=exempt,
        )
        extra = {
            "sources": [o.report() for o in outcomes],
            "source_errors": {o.entry: o.error for o in failed},
            "counts": selection.stats,
        }
        return StepOutput(content=selection.items, extra=extra)

    async def _fetch(self, entry: str, info: NewsSourceInfo, inputs: NewsInputs) -> SourceOutcome:
        """Ask one source, within the step's deadline; any failure becomes the outcome's error."""
        outcome = SourceOutcome(entry=entry, source=info.name)
        request = NewsRequest(
            entry=entry,
            query=inputs.query,
            since=inputs.since,
            language=inputs.language,
            max_items=inputs.max_items,
            timeout=self.timeout,
            max_bytes=self.max_bytes,
            max_redirects=self.max_redirects,
            user_agent=USER_AGENT,
        )
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = asyncio.timeout(self.timeout)
        try:
            source = info.factory()
            async with deadline:
                raw = await source.fetch(request)
            batch = _as_items(raw, entry)
            outcome.items = list(batch.items)  # type: ignore[arg-type]
            outcome.title = batch.title
            outcome.warnings = batch.warnings
            outcome.skipped = batch.skipped
        except NewsSourceError as exc:
            outcome.error, outcome.kind = str(exc), exc.kind
        except TimeoutError as exc:
            expired = deadline.expired()
            outcome.error = f"{entry} timed out after {self.timeout:g} s" if expired else describe_error(exc)
            outcome.kind = "timeout"
        except Exception as exc:  # a third-party source's bug is that source's failure only
            outcome.error, outcome.kind = describe_error(exc), "error"
        outcome.elapsed_ms = int((loop.time() - started) * 1000)
        return outcome

    @classmethod
    def restore_output(cls, stored: Any) -> list[NewsItem]:
        """Turn a stored output back into ``NewsItem``s (used when resuming a run)."""
        return [NewsItem.model_validate(item) for item in stored or []]
