"""The seed plan's article-processing flow: extract the content, then summarise it as structured data.

Run it: ``flow run article_processing --input article_text=@sample_article.txt`` (offline by default).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from flow_engine import BaseFlow, StepResult, StructuredStep, UnstructuredStep


class ExtractContentStep(UnstructuredStep):
    step_name = "extract_content"
    prompt_file = "extract_content.md"
    max_output_tokens = 800  # the answer's length limit (FLOW_ENGINE_MAX_OUTPUT_TOKENS otherwise)

    class Inputs(BaseModel):
        article_text: str = Field(..., description="Article to extract from")
        max_length: int = Field(default=500, description="Maximum extraction length")


class SummarizeStep(StructuredStep):
    step_name = "summarize"
    prompt_file = "summarize.md"
    max_output_tokens = 600

    class Inputs(BaseModel):
        content: str = Field(..., description="Content to summarize")
        style: str = Field(default="professional", description="Writing style")

    class Outputs(BaseModel):
        title: str = Field(..., description="Generated title")
        summary: str = Field(..., description="Content summary")
        key_points: list[str] = Field(..., description="Key points")


class ArticleProcessingFlow(BaseFlow):
    """Extracts an article's essential content, then summarises it with a title and key points."""

    flow_name = "article_processing"
    total_steps = 2

    class Inputs(BaseModel):
        article_text: str = Field(..., description="The article to process")
        style: str = Field(default="professional", description="Writing style")

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        extract_result = await ExtractContentStep().execute(
            {"article_text": inputs["article_text"], "max_length": 500}
        )
        summary_result = await SummarizeStep().execute(
            {"content": extract_result.output_content, "style": inputs["style"]}
        )
        return {
            "extracted_content": extract_result.output_content,
            "summary": summary_result.output_content.model_dump(),
            "metadata": {
                "total_tokens": extract_result.metadata["tokens_used"]
                + summary_result.metadata["tokens_used"],
                "total_cost": total_cost(extract_result, summary_result),
            },
        }


def total_cost(*results: StepResult) -> float | None:
    """The steps' summed cost in USD, or None (unknown) when any step's model has no known price.

    A step whose model litellm has no price for (a local model behind an OpenAI-compatible server, say)
    has ``cost_known`` False (its ``cost_estimate`` reads 0.0): an unknown cost is not a total of 0.
    """
    if not all(result.metadata.get("cost_known", True) for result in results):
        return None
    return sum(result.metadata["cost_estimate"] for result in results)
