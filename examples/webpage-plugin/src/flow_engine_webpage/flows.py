"""The ``page_summary`` flow: fetch a page with ``webpage_text``, then summarise it as structured data.

Run it: ``flow run page_summary --input url=https://example.com/article.html`` (offline by default; set
FLOW_ENGINE_MODEL or ``--model`` for a real model). The prompt, ``prompts/page_summary.md``, ships in
this package beside this module, which is where flow-engine looks for a step's ``prompt_file`` first.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from flow_engine import BaseFlow, StructuredStep

from .models import PageUrl, WebPage
from .step import WebPageStep


class SummarizePageStep(StructuredStep):
    """Summarises a page's text: a short summary and its key points."""

    step_name = "summarize_page"
    prompt_file = "page_summary.md"
    max_output_tokens = 600  # the answer's length limit (FLOW_ENGINE_MAX_OUTPUT_TOKENS otherwise)

    class Inputs(BaseModel):
        url: str = Field(..., description="Where the text comes from")
        title: str = Field(default="", description="The page's title")
        text: str = Field(..., min_length=1, description="The page's readable text")
        truncated: bool = Field(default=False, description="The text is only the page's first part")

    class Outputs(BaseModel):
        summary: str = Field(..., description="Two to four sentences saying what the page says")
        key_points: list[str] = Field(..., min_length=1, max_length=7, description="The main facts or claims")


class PageSummaryFlow(BaseFlow):
    """Reads a web page and summarises it: its title, a short summary and its key points.

    The page is fetched by the webpage_text step (http, https or file URLs; HTML only).
    """

    flow_name = "page_summary"
    total_steps = 2

    class Inputs(BaseModel):
        url: PageUrl = Field(..., description="The page to summarise (http://, https:// or file://)")
        max_chars: int = Field(
            default=12_000, ge=100, le=200_000, description="Page text sent to the model, at most"
        )
        timeout: float = Field(default=15.0, gt=0, le=120, description="Seconds the fetch may take")

    class Outputs(BaseModel):
        url: str
        final_url: str
        title: str
        summary: str
        key_points: list[str]
        chars: int
        truncated: bool

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        fetched = await WebPageStep().execute(
            {"url": inputs["url"], "max_chars": inputs["max_chars"], "timeout": inputs["timeout"]}
        )
        page: WebPage = fetched.output_content
        summarized = await SummarizePageStep().execute(
            {"url": page.final_url, "title": page.title, "text": page.text, "truncated": page.truncated}
        )
        return {
            "url": page.url,
            "final_url": page.final_url,
            "title": page.title,
            "summary": summarized.output_content.summary,
            "key_points": summarized.output_content.key_points,
            "chars": page.chars,
            "truncated": page.truncated,
        }
