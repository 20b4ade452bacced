"""The seed plan's three usage examples, exactly as written there; only the import line changed
(``modules.flow_engine.public`` -> ``flow_engine.public``) and ``typing.Any`` / ``ImageStep`` imported,
which the seed uses without importing. ``CreateThumbnailStep`` comes from the seed's public.py guide."""

from typing import Any

from pydantic import BaseModel, Field

from flow_engine.public import BaseFlow, ImageStep, StructuredStep, UnstructuredStep


# Image generation (from the seed's public.py "Creating Steps")
class CreateThumbnailStep(ImageStep):
    step_name = "create_thumbnail"

    class Inputs(BaseModel):
        prompt: str = Field(..., description="Image generation prompt")
        size: str = Field(default="1024x1024", description="Image size")


# ---- Example 1: Complete Article Processing Flow ----
# Define steps with type safety
class ExtractContentStep(UnstructuredStep):
    step_name = "extract_content"
    prompt_file = "extract_content.md"

    class Inputs(BaseModel):
        article_text: str = Field(..., description="Article to extract from")
        max_length: int = Field(default=500, description="Maximum extraction length")

class SummarizeStep(StructuredStep):
    step_name = "summarize"
    prompt_file = "summarize.md"

    class Inputs(BaseModel):
        content: str = Field(..., description="Content to summarize")
        style: str = Field(default="professional", description="Writing style")

    class Outputs(BaseModel):
        title: str = Field(..., description="Generated title")
        summary: str = Field(..., description="Content summary")
        key_points: list[str] = Field(..., description="Key points")

# Define flow with clean, consistent interface
class ArticleProcessingFlow(BaseFlow):
    flow_name = "article_processing"

    # Optional input validation
    class Inputs(BaseModel):
        article_text: str = Field(..., description="The article to process")
        style: str = Field(default="professional", description="Writing style")

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """Clean implementation - no boilerplate needed!"""

        # Step 1: Extract content - consistent execute() interface
        extract_result = await ExtractContentStep().execute({
            "article_text": inputs["article_text"],
            "max_length": 500
        })

        # Step 2: Summarize - same pattern
        summary_result = await SummarizeStep().execute({
            "content": extract_result.output_content,
            "style": inputs["style"]
        })

        return {
            "extracted_content": extract_result.output_content,
            "summary": summary_result.output_content.model_dump(),
            "metadata": {
                "total_tokens": extract_result.metadata["tokens_used"] + summary_result.metadata["tokens_used"],
                "total_cost": extract_result.metadata["cost_estimate"] + summary_result.metadata["cost_estimate"]
            }
        }

# Usage - beautifully consistent!
async def process_article():
    # Execute flow - same pattern as steps
    result = await ArticleProcessingFlow().execute({
        "article_text": "Long article content...",
        "style": "technical"
    })

    print(f"Title: {result['summary']['title']}")
    print(f"Summary: {result['summary']['summary']}")
    print(f"Total tokens: {result['metadata']['total_tokens']}")


# ---- Example 2: Composable Flows ----
class MasterContentFlow(BaseFlow):
    """Flow that composes other flows."""
    flow_name = "master_content"

    class Inputs(BaseModel):
        article_text: str
        create_image: bool = True

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        # Call sub-flow using same interface
        article_result = await ArticleProcessingFlow().execute({
            "article_text": inputs["article_text"],
            "style": "professional"
        })

        result = {"article": article_result}

        # Optionally generate image
        if inputs["create_image"]:
            image_result = await CreateThumbnailStep().execute({
                "prompt": f"Thumbnail for: {article_result['summary']['title']}"
            })
            result["thumbnail"] = image_result.output_content

        return result


# ---- Example 3: Individual Step Usage ----
# Steps can be used independently with same interface
async def use_individual_steps():
    # Extract content
    extract_result = await ExtractContentStep().execute({
        "article_text": "Some article text...",
        "max_length": 300
    })

    # Generate summary
    summary_result = await SummarizeStep().execute({
        "content": extract_result.output_content,
        "style": "casual"
    })

    # Create image
    image_result = await CreateThumbnailStep().execute({
        "prompt": f"Image for: {summary_result.output_content.title}"
    })

    return {
        "content": extract_result.output_content,
        "summary": summary_result.output_content.model_dump(),
        "image": image_result.output_content
    }
