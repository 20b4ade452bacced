"""
Flow Engine Public Interface

Everything needed to create and execute AI-powered workflows. Both flows and steps use consistent
``execute()`` methods with type-safe pydantic inputs; every run and step is recorded in SQL.

## Quick Start

The two blocks below continue each other, like one Python session with top-level ``await`` (a
notebook, or ``python -m asyncio``); ``tests/core/test_public_guide.py`` runs them.

### Creating Steps
```python
from typing import Any
from pydantic import BaseModel, Field
from flow_engine import BaseFlow, BaseStep, ImageStep, StructuredStep, UnstructuredStep

# Unstructured text generation: output_content is the model's text
class ExtractContentStep(UnstructuredStep):
    step_name = "extract_content"
    prompt_file = "extract_content.md"          # Jinja2: {{ article_text }}, {{ max_length }}

    class Inputs(BaseModel):
        article_text: str = Field(..., description="Article to extract from")
        max_length: int = Field(default=500, description="Maximum extraction length")

# Structured output generation: output_content is an Outputs instance
class SummarizeStep(StructuredStep):
    step_name = "summarize"
    prompt_file = "summarize.md"

    class Inputs(BaseModel):
        content: str = Field(..., description="Content to summarize")
        style: str = Field(default="professional", description="Writing style")

    class Outputs(BaseModel):
        title: str = Field(..., description="Generated title")
        summary: str = Field(..., description="Content summary")
        key_points: list[str] = Field(..., description="Key points extracted")

# Image generation: no prompt_file, so the `prompt` input is the prompt
class CreateThumbnailStep(ImageStep):
    step_name = "create_thumbnail"

    class Inputs(BaseModel):
        prompt: str = Field(..., description="Image generation prompt")
        size: str = Field(default="1024x1024", description="Image size")

# Plain Python: no LLM call, recorded like any other step
class CountWordsStep(BaseStep):
    step_name = "count_words"

    class Inputs(BaseModel):
        text: str

    async def run(self, inputs: Inputs) -> int:
        return len(inputs.text.split())

# Execute any step - consistent interface
result = await ExtractContentStep().execute({"article_text": "Article content...", "max_length": 300})
```

### Creating a Flow
```python
class ArticleProcessingFlow(BaseFlow):
    flow_name = "article_processing"

    # Optional: Input validation
    class Inputs(BaseModel):
        article_text: str = Field(..., description="The article to process")
        style: str = Field(default="professional", description="Writing style")

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        extract_result = await ExtractContentStep().execute({"article_text": inputs["article_text"]})
        summary_result = await SummarizeStep().execute({
            "content": extract_result.output_content,
            "style": inputs["style"],
        })
        words_result = await CountWordsStep().execute({"text": extract_result.output_content})
        return {
            "summary": summary_result.output_content.model_dump(),
            "metadata": {
                "words": words_result.output_content,
                "total_tokens": extract_result.metadata["tokens_used"]
                + summary_result.metadata["tokens_used"],
            },
        }

# Execute the flow - same pattern as steps!
result = await ArticleProcessingFlow().execute(
    {"article_text": "Long article content...", "style": "technical"}
)
```

Steps called inside a flow belong to that flow's run, in call order; steps started together with
``asyncio.gather`` each keep their own place. A flow executed inside a flow is a child run of it. A step
called outside any flow works too (its LLM calls are still recorded).

## Available Base Classes

### BaseFlow
- **Required**: ``flow_name: str``; ``async def _execute_flow_logic(self, inputs: dict) -> dict``.
- **Optional**: ``Inputs`` / ``Outputs`` (pydantic models), ``total_steps`` (enables a progress
  percentage), ``model`` (default model for the run's LLM steps), ``description``.
- ``async def execute(self, inputs: dict, *, user_id=None, model=None, metadata=None, max_cost=None,
  max_tokens=None) -> dict`` runs the flow as a recorded run; ``self.run_id`` holds its id once the run
  row exists.

### BaseStep
- **Attributes**: ``step_name`` (defaults to the class name in snake_case), ``prompt_file`` (in a
  ``prompts/`` folder), ``Inputs`` (pydantic model), ``model``, ``api_base``.
- ``async def execute(self, inputs: dict, *, model=None) -> StepResult``.
- A plain-Python step implements ``async def run(self, inputs)`` (it receives the validated ``Inputs``).

### UnstructuredStep(BaseStep)
Text generation; ``result.output_content`` is a string. ``system_prompt`` and ``llm_params``
(e.g. ``{"temperature": 0.2}``) are optional class attributes of every LLM step. Streaming:
``await step.execute(inputs, on_text=callback)`` hands each piece of the answer to ``callback`` as the
model writes it, ``async for piece in step.stream(inputs)`` iterates them (``flow run --stream`` prints
them); what is recorded is the same as without.

### StructuredStep(BaseStep)
Requires ``Outputs``. Uses the provider's native JSON-schema output where litellm supports it, else JSON
mode with the schema in the prompt, else the schema in the prompt only (a server that rejects a way is
asked the next one); always validated with pydantic, re-asked with the validation errors up to
``max_reasks`` times (``structured_output = "auto" | "native" | "json" | "prompt"`` forces a way).

### NewsStep(BaseStep)
Step type ``news_gathering``. Inputs ``query``, ``sources`` (feed URLs, ``file://`` paths, names of
registered news sources such as ``ddgs``), ``max_items``, ``since`` (``24h``, ``7d``, a date),
``language``. ``output_content`` is a list of ``NewsItem`` (title, url, source, published, summary,
authors): deduplicated, filtered, newest first; per-source errors are in ``metadata["source_errors"]``.

### ImageStep(BaseStep)
Reads the inputs ``prompt``, ``size``, ``quality``, ``n``. Images are saved under the artifacts folder;
``output_content`` is ``{"images": [{"path", "url", "revised_prompt", "mime_type", "size_bytes",
"width", "height"}], "path", "url", "prompt"}``.

## Result Types

### StepResult
- ``step_name: str``
- ``output_content: Any`` - text, an ``Outputs`` instance, image data, or a plain step's return value
- ``metadata: dict`` - ``tokens_used``, ``cost_estimate`` (USD; ``None`` when the model is unpriced:
  an unknown cost is never 0, so code that adds costs up must treat ``None`` as unknown),
  ``execution_time_ms``, ``provider``, ``model``, ``llm_calls``, ``unpriced_calls``, and inside a flow
  ``run_id``, ``step_key``, ``step_order``.

## Step Types
An open registry of names (plugins add more; ``StepType.registered()`` lists them):
- ``StepType.UNSTRUCTURED_LLM`` - text generation
- ``StepType.STRUCTURED_LLM`` - structured data extraction/generation
- ``StepType.IMAGE_GENERATION`` - image creation
- ``StepType.NEWS_GATHERING`` - news search (a plugin step type)
- ``StepType.PYTHON`` - plain Python steps

## Models
Model resolution: ``execute(..., model=)`` > step ``model`` > run-level (``BaseFlow.execute(model=)``,
``flow run --model``) > ``FLOW_ENGINE_MODEL`` > the offline model (``offline/default``, deterministic,
no network; a notice on stderr says so). Any litellm model string works (``openai/gpt-4o-mini``,
``anthropic/...``, ``ollama/...``); ``FLOW_ENGINE_API_BASE`` points at an OpenAI-compatible server.

## Many items
- ``results = await self.map(StepOrFlowClass, items, concurrency=8, on_error="stop")`` inside
  ``_execute_flow_logic``: one keyed step (or child run) per item, at most ``concurrency`` at once,
  results in input order; a resumed run replays the completed items. ``on_error="collect"`` leaves each
  failure's exception in its place. ``flow batch FLOW --inputs-file items.jsonl`` runs a flow per line
  (``flow_engine.batch.run_batch``), grouped by a batch id (``flow runs --batch ID``, ``--resume ID``;
  ``--background`` hands the items, or a resumed batch's failed runs, to the workers:
  ``flow_engine.batch.submit_batch``).
- ``FLOW_ENGINE_RATE_LIMITS="openai/*=500rpm,200000tpm"``: every LLM call waits for its model's limit
  (shared through ``FLOW_ENGINE_RATE_LIMITS_REDIS``); the wait is recorded as ``queue_ms``.
- The response cache: ``cache = True`` on a step, ``execute(..., cache=True)`` / ``flow run --cache``,
  or ``FLOW_ENGINE_CACHE=1``; a hit makes no request and is recorded with cost 0 and ``cached_from``.
  See docs/batches.md and docs/caching.md.
- ``FLOW_ENGINE_LLM_PROCESSES=N`` (default 0): calls to network models are made in N worker processes,
  litellm's CPU on other cores, for hundreds of calls in flight (docs/models.md).

## Durable execution
- ``await resume_run(run_id)`` (``flow resume RUN_ID``) runs a failed, crashed or cancelled run again in
  place: steps that completed return their stored outputs with no LLM call (a structured step's output
  comes back as its ``Outputs`` model); if the code now calls a different step at a completed position,
  ``ResumeMismatch`` is raised instead of mixing results. Child flows resume the same way.
- ``await fork_run(run_id, "step_key", inputs={...}, model=...)`` (``flow fork RUN --from STEP``): a
  new run that reuses the stored outputs of the steps before that step (no LLM call) and runs live from
  it with the changed inputs or model; ``flow_metadata["forked_from"]`` links it to the original, which
  is never changed. ``flow fork RUN --list`` shows the step keys.
- Waiting for a person: ``answer = await self.wait_for_input("approve", Approval, prompt="...",
  timeout=3600)`` inside ``_execute_flow_logic`` (``Approval`` a pydantic model). The run is recorded
  ``waiting`` and ``execute()`` raises ``RunWaiting`` (``run_id``, ``name``, ``prompt``, ``schema``);
  ``flow run`` exits 3. ``await respond_to_run(run_id, "approve", {...})`` (``flow respond RUN approve
  --input approved=true``) validates the answer against the stored schema and continues the run in
  place, its completed steps replayed with no LLM call; a deadline that passed fails the run. A
  waiting run's page in ``flow ui`` has a form for the answer, checked the same way, and programs can
  ``POST /api/runs/{id}/answer`` there (``{"name": ..., "answer": {...}}``, JSON).
- ``await cancel_run(run_id)`` (``flow cancel``): the run stops at its next step boundary, ``cancelled``
  (a run nobody executes, waiting for input included, is cancelled at once).
- A running run refreshes ``last_heartbeat``; one whose heartbeat is older than
  ``FLOW_ENGINE_STALE_AFTER`` seconds is shown as ``crashed``; ``await recover_runs()`` (``flow recover``)
  marks them so.
- Budgets: ``max_cost`` (USD) / ``max_tokens`` as flow attributes or ``execute()`` arguments stop the run
  at a step boundary with ``BudgetExceeded``; calls of unknown cost are counted and reported.

## Records
Every run, step and LLM attempt is stored (``FLOW_ENGINE_DATABASE_URL``; default a SQLite file in the
user data folder): see ``flow runs`` / ``flow show RUN_ID``. ``configure(...)`` sets any setting in code.

## Errors
Every error flow-engine raises on purpose is a ``FlowEngineError``:
- ``UsageError`` - the call is wrong; fix it, do not retry (CLI exit code 2). Its kinds:
  ``InputValidationError`` (inputs failed validation; every bad field named, also a ``ValueError``),
  ``PromptError`` (a prompt template is missing or uses an undefined variable).
- ``LLMError`` - an LLM call failed for good after its retries (``StructuredOutputError``: the model
  kept answering output that does not validate against ``Outputs``). What the provider raised is
  chained as a redacted copy: no API key or header value is in the error or its ``__cause__``.
- ``RunCancelled``, ``BudgetExceeded``, ``ResumeMismatch``, ``RunWaiting`` - see Durable execution.

## Other names
- ``RunStatus`` - the statuses of runs and steps (``pending``, ``running``, ``completed``, ``failed``,
  ``cancelled``, ``crashed``, ``waiting``).
- ``current_run_id()`` - the id of the run the calling code executes in, or ``None`` outside a flow.
- ``hookimpl`` - marks a plugin's hook implementations (the plugin API is ``flow_engine.plugin``).

## Key Features
- **Consistent Interface**: Both flows and steps use ``execute()``
- **Type Safety**: pydantic validation for inputs and outputs; errors name each bad field
- **Automatic Context**: no boilerplate - runs, steps and child runs are tracked via contextvars
- **Composable**: flows can call other flows using the same interface
- **Pluggable**: step types, storage backends and model providers are pluggy plugins
"""

import importlib
from typing import TYPE_CHECKING, Any

from .context import current_run_id
from .engine import configure
from .errors import (
    BudgetExceeded,
    FlowEngineError,
    InputValidationError,
    LLMError,
    PromptError,
    ResumeMismatch,
    RunCancelled,
    RunWaiting,
    StructuredOutputError,
    UsageError,
)
from .flows import BaseFlow
from .fork import fork_run
from .hookspecs import hookimpl
from .respond import respond_to_run
from .resume import cancel as cancel_run
from .resume import recover as recover_runs
from .resume import resume as resume_run
from .steps import BaseStep, StepResult, StepType
from .storage import RunStatus

if TYPE_CHECKING:  # pragma: no cover
    from flow_engine.plugins.image import ImageStep
    from flow_engine.plugins.news import NewsItem, NewsStep
    from flow_engine.plugins.structured import StructuredStep
    from flow_engine.plugins.unstructured import UnstructuredStep

# the seed's built-in step classes: they belong to their plugins, and are re-exported here on first
# use (PEP 562), so that the core imports no plugin
_BUILT_IN_STEPS = {
    "ImageStep": "flow_engine.plugins.image",
    "NewsItem": "flow_engine.plugins.news",
    "NewsStep": "flow_engine.plugins.news",
    "StructuredStep": "flow_engine.plugins.structured",
    "UnstructuredStep": "flow_engine.plugins.unstructured",
}


def __getattr__(name: str) -> Any:
    module = _BUILT_IN_STEPS.get(name)
    if module is None:
        raise AttributeError(f"module 'flow_engine.public' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "BaseFlow",
    "BaseStep",
    "BudgetExceeded",
    "FlowEngineError",
    "ImageStep",
    "InputValidationError",
    "LLMError",
    "NewsItem",
    "NewsStep",
    "PromptError",
    "ResumeMismatch",
    "RunCancelled",
    "RunStatus",
    "RunWaiting",
    "StepResult",
    "StepType",
    "StructuredOutputError",
    "StructuredStep",
    "UnstructuredStep",
    "UsageError",
    "cancel_run",
    "configure",
    "current_run_id",
    "fork_run",
    "hookimpl",
    "recover_runs",
    "respond_to_run",
    "resume_run",
]
