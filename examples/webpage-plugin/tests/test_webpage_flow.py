"""The ``page_summary`` flow in process: found by name, run offline, every step and prompt recorded."""

from __future__ import annotations

from pathlib import Path

import flow_engine_webpage
import pytest
from flow_engine_webpage import WebPage, WebPageError, WebPageStep
from flow_engine_webpage.flows import PageSummaryFlow, SummarizePageStep
from webpage_site import Site

from flow_engine import BaseFlow, InputValidationError, RunStatus
from flow_engine.engine import get_engine
from flow_engine.flow_registry import describe_inputs, load_registered


def test_the_flow_is_registered_by_name() -> None:
    assert load_registered("page_summary") is PageSummaryFlow
    assert issubclass(PageSummaryFlow, BaseFlow)
    assert [(i.name, i.required) for i in describe_inputs(PageSummaryFlow)] == [
        ("url", True),
        ("max_chars", False),
        ("timeout", False),
    ]


def test_the_prompt_ships_beside_the_installed_module() -> None:
    prompt = Path(flow_engine_webpage.__file__).parent / "prompts" / SummarizePageStep.prompt_file
    assert prompt.is_file()
    assert "{{ text }}" in prompt.read_text(encoding="utf-8")


async def test_summarises_a_page_offline(site: Site) -> None:
    flow = PageSummaryFlow()
    outputs = await flow.execute({"url": site.url("/chain/1")})

    assert outputs["url"] == site.url("/chain/1")
    assert outputs["final_url"] == site.url("/article.html")
    assert outputs["title"] == "Tidal Energy Comes of Age | Coastal Gazette"
    assert outputs["summary"]
    assert outputs["key_points"] and all(isinstance(p, str) and p for p in outputs["key_points"])
    assert outputs["truncated"] is False
    PageSummaryFlow.Outputs.model_validate(outputs)

    store = get_engine().store
    run = store.get_run(flow.run_id)
    assert run is not None and run.status == RunStatus.COMPLETED
    assert run.step_progress == 2 and run.progress_percentage == 100.0
    steps = store.list_steps(flow.run_id)
    assert [(s.step_name, s.step_type, s.status) for s in steps] == [
        ("fetch_page", "webpage_text", "completed"),
        ("summarize_page", "structured_llm", "completed"),
    ]
    fetched = steps[0].outputs["output_content"]
    assert WebPage.model_validate(fetched).final_url == site.url("/article.html")
    assert fetched["chars"] == outputs["chars"] == len(fetched["text"])
    assert steps[0].tokens_used == 0 and steps[0].llm_request_id is None
    assert steps[1].tokens_used > 0


async def test_the_model_is_asked_with_the_shipped_prompt_and_the_page_text(site: Site) -> None:
    flow = PageSummaryFlow()
    await flow.execute({"url": site.url("/noisy.html")})

    requests = get_engine().store.list_llm_requests(flow_run_id=flow.run_id)
    assert len(requests) == 1
    prompt = "\n".join(str(m.get("content")) for m in requests[0].request_messages or [])
    assert "Summarise the web page below" in prompt  # from prompts/page_summary.md
    assert "Page title: Sourdough at Altitude" in prompt
    assert f"Page URL: {site.url('/noisy.html')}" in prompt
    assert "Bake at 230°C for the first twenty minutes with steam." in prompt
    assert "Tracking pixel" not in prompt and "cookies" not in prompt
    assert "only the first part" not in prompt


async def test_a_cut_page_says_so_in_the_prompt(site: Site) -> None:
    flow = PageSummaryFlow()
    outputs = await flow.execute({"url": site.url("/article.html"), "max_chars": 200})

    assert outputs["truncated"] is True and outputs["chars"] <= 200
    request = get_engine().store.list_llm_requests(flow_run_id=flow.run_id)[0]
    assert "only the first part of the page" in str(request.request_messages)


async def test_a_failed_fetch_fails_the_run_before_any_llm_call(site: Site) -> None:
    flow = PageSummaryFlow()
    with pytest.raises(WebPageError, match="HTTP 404"):
        await flow.execute({"url": site.url("/missing.html")})

    store = get_engine().store
    run = store.get_run(flow.run_id)
    assert run is not None and run.status == RunStatus.FAILED
    assert "HTTP 404" in (run.error_message or "")
    steps = store.list_steps(flow.run_id)
    assert [(s.step_name, s.status) for s in steps] == [("fetch_page", "failed")]
    assert "WebPageError" in (steps[0].error_message or "")
    assert store.list_llm_requests(flow_run_id=flow.run_id) == []


async def test_a_bad_url_is_refused_before_a_run_exists(site: Site) -> None:
    flow = PageSummaryFlow()
    with pytest.raises(InputValidationError, match="url"):
        await flow.execute({"url": "ftp://example.com/x.html"})
    assert flow.run_id is None
    assert get_engine().store.list_runs() == []


async def test_a_subclassed_step_works_inside_a_users_own_flow(site: Site) -> None:
    """What a plugin user writes: their own flow around the plugin's step, with their own limits."""

    class ShortPage(WebPageStep):
        step_name = "short_page"

    class TitlesFlow(BaseFlow):
        flow_name = "titles"

        async def _execute_flow_logic(self, inputs: dict) -> dict:
            pages = [await ShortPage().execute({"url": url, "max_chars": 100}) for url in inputs["urls"]]
            return {"titles": [p.output_content.title for p in pages]}

    flow = TitlesFlow()
    outputs = await flow.execute({"urls": [site.url("/article.html"), site.url("/latin1.html")]})

    assert outputs == {"titles": ["Tidal Energy Comes of Age | Coastal Gazette", "Café crème"]}
    keys = [s.step_key for s in get_engine().store.list_steps(flow.run_id)]
    assert keys == ["short_page", "short_page#2"]
