"""The ``news_digest`` example flow: gather news, write a digest with an LLM, optionally illustrate it.

Try it offline (the bundled sample feed and the offline model, no network, no key)::

    flow run news_digest
    flow run news_digest --input sources='["file:///path/to/feed.xml"]' --input query=harbour
    flow run news_digest --input sources='["file:examples/flows/sample_news.xml"]' --input image=true

With real feeds and a real model::

    FLOW_ENGINE_MODEL=openai/gpt-4o-mini flow run news_digest \\
        --input sources='["https://example.com/feed.xml", "ddgs"]' \\
        --input query="tidal energy" --input since=7d

The model writes the headline, the summary and one sentence per item, referring to items by their
number; the links in the digest are always the gathered items' own, never text the model produced.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field, field_validator

from flow_engine import BaseFlow, ImageStep, StructuredStep
from flow_engine.plugins.news import NewsItem, NewsStep
from flow_engine.plugins.news.models import check_since
from flow_engine.plugins.news.sources import check_entries

SAMPLE_FEED = Path(__file__).resolve().with_name("sample_news.xml")


class GatherNewsStep(NewsStep):
    step_name = "gather_news"


class DigestLine(BaseModel):
    number: int = Field(..., description="The item's number in the list of news items")
    line: str = Field(..., description="One sentence saying what that item reports")


class WriteDigestStep(StructuredStep):
    step_name = "write_digest"
    prompt_file = "news_digest.md"
    max_output_tokens = 1500  # the answer's length limit (FLOW_ENGINE_MAX_OUTPUT_TOKENS otherwise)

    class Inputs(BaseModel):
        items: list[NewsItem] = Field(
            ..., min_length=1, description="The news items to digest, numbered from 1"
        )
        query: str = Field("", description="What the digest is about")
        style: str = Field("concise", description="Writing style")

    class Outputs(BaseModel):
        headline: str = Field(..., description="Headline of the whole digest")
        summary: str = Field(..., description="Two or three sentences on what the items say together")
        lines: list[DigestLine] = Field(..., description="One line per news item, by its number")


class IllustrateDigestStep(ImageStep):
    step_name = "illustrate_digest"
    prompt_file = "news_digest_image.md"

    class Inputs(BaseModel):
        headline: str
        summary: str
        size: str = "1024x1024"


class DigestItem(BaseModel):
    line: str = Field(..., description="One sentence about the item")
    title: str
    url: str
    source: str
    published: datetime | None


class NewsDigestOutputs(BaseModel):
    headline: str
    summary: str
    items: list[DigestItem]
    markdown: str = Field(..., description="The digest as Markdown, one bullet per item with its link")
    image: str | None = Field(None, description="Path of the illustration, when one was asked for")
    source_errors: dict[str, str] = Field(default_factory=dict, description="Sources that failed, and why")


def digest_items(items: list[NewsItem], lines: list[DigestLine]) -> list[DigestItem]:
    """One entry per gathered item, in order: the model's line for its number, else the item's title.

    Numbers the model made up or repeated are ignored, so every item appears exactly once.
    """
    by_number: dict[int, str] = {}
    for entry in lines:
        text = " ".join(entry.line.split())
        if 1 <= entry.number <= len(items) and entry.number not in by_number and text:
            by_number[entry.number] = text
    return [
        DigestItem(
            line=by_number.get(n, item.title),
            title=item.title,
            url=item.url,
            source=item.source,
            published=item.published,
        )
        for n, item in enumerate(items, start=1)
    ]


def why_empty(counts: dict[str, int]) -> str:
    """Explain an empty digest from the news step's counts (what each filter removed)."""
    fetched = counts.get("fetched", 0)
    if not fetched:
        return "The sources returned no items."
    reasons = {
        "too_old": "too old",
        "undated": "undated",
        "query": "not matching the query",
        "language": "in another language",
    }
    parts = [f"{counts[key]} {label}" for key, label in reasons.items() if counts.get(key)]
    return (
        f"None of the {fetched} items the sources returned was kept ({', '.join(parts) or 'all filtered'})."
    )


def to_markdown(headline: str, summary: str, items: list[DigestItem]) -> str:
    bullets = [f"- {item.line} ([{item.source or 'link'}]({item.url}))" for item in items]
    return "\n".join([f"# {headline}", "", summary, "", *bullets]).rstrip() + "\n"


class NewsDigestFlow(BaseFlow):
    """Gathers news from feeds or news sources and writes a digest (headline, summary, a line per item)."""

    flow_name = "news_digest"
    total_steps = 3
    Outputs = NewsDigestOutputs

    class Inputs(BaseModel):
        sources: list[str] = Field(
            default_factory=lambda: [SAMPLE_FEED.as_uri()],
            min_length=1,
            description="Feed URLs (https://, file:///) and/or news source names; default: a sample feed",
        )
        query: str = Field("", description="Only items mentioning every word; empty keeps everything")
        since: Annotated[str | None, AfterValidator(check_since)] = Field(
            None, description="Only items newer than this: 24h, 7d, or an ISO date"
        )
        max_items: int = Field(10, ge=1, le=50, description="At most this many items in the digest")
        language: str | None = Field(None, description="Language tag (en, de...) for sources that support it")
        style: str = Field("concise", description="Writing style of the digest")
        image: bool = Field(False, description="Also generate an illustration")
        image_size: str = Field("1024x1024", description="Size of the illustration")

        @field_validator("sources", mode="before")
        @classmethod
        def _one_source(cls, value: Any) -> Any:
            return [value] if isinstance(value, str) else value

        @field_validator("sources", mode="after")
        @classmethod
        def _known_sources(cls, value: list[str]) -> list[str]:
            return check_entries(value)

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        gathered = await GatherNewsStep().execute(
            {key: inputs[key] for key in ("sources", "query", "since", "max_items", "language")}
        )
        items: list[NewsItem] = gathered.output_content
        source_errors: dict[str, str] = gathered.metadata.get("source_errors", {})
        if not items:  # nothing to digest: say so instead of paying a model to invent something
            about = f" about '{inputs['query']}'" if inputs["query"] else ""
            headline, summary, entries = f"No news{about}", why_empty(gathered.metadata.get("counts", {})), []
        else:
            digest = await WriteDigestStep().execute(
                {"items": items, "query": inputs["query"], "style": inputs["style"]}
            )
            written = digest.output_content
            headline, summary = written.headline.strip(), written.summary.strip()
            entries = digest_items(items, written.lines)
        image_path = None
        if inputs["image"] and entries:
            picture = await IllustrateDigestStep().execute(
                {"headline": headline, "summary": summary, "size": inputs["image_size"]}
            )
            image_path = picture.output_content.get("path")
        return {
            "headline": headline,
            "summary": summary,
            "items": [entry.model_dump() for entry in entries],
            "markdown": to_markdown(headline, summary, entries),
            "image": image_path,
            "source_errors": source_errors,
        }
