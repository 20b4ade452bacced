"""The built-in ``article_processing`` example against an OpenAI-compatible server, priced or not."""

from __future__ import annotations

import json

import pytest

from flow_engine.engine import get_engine
from flow_engine.examples.article_processing import ArticleProcessingFlow
from tests.fake_openai_server import Reply, run_flow_cli, use_fake_openai

pytestmark = pytest.mark.usefixtures("no_network")  # 127.0.0.1 only

SUMMARY = {"title": "Cats", "summary": "Cats sleep a lot.", "key_points": ["sleep", "purr"]}
UNPRICED = "openai/my-local-model"  # a local model behind an OpenAI-compatible server: no known price


def script_answers(fake_openai) -> None:
    fake_openai.script(
        Reply("Cats sleep sixteen hours a day.", usage=(40, 8)), Reply(json=SUMMARY, usage=(60, 20))
    )


async def test_an_unpriced_model_gives_an_unknown_total_cost(fake_openai, tmp_path):
    use_fake_openai(fake_openai.base_url, tmp_path)
    script_answers(fake_openai)
    flow = ArticleProcessingFlow()
    outputs = await flow.execute({"article_text": "Cats sleep."}, model=UNPRICED)
    assert outputs["summary"] == SUMMARY
    assert outputs["metadata"] == {"total_tokens": 48 + 80, "total_cost": None}
    steps = get_engine().store.list_steps(flow.run_id)
    assert [step.cost_estimate for step in steps] == [None, None]
    assert len(fake_openai.chat_requests) == 2


async def test_a_priced_model_gives_the_sum_of_the_step_costs(fake_openai, tmp_path):
    use_fake_openai(fake_openai.base_url, tmp_path)
    script_answers(fake_openai)
    flow = ArticleProcessingFlow()
    outputs = await flow.execute({"article_text": "Cats sleep."}, model="openai/gpt-4o-mini")
    costs = [step.cost_estimate for step in get_engine().store.list_steps(flow.run_id)]
    assert all(cost > 0 for cost in costs)
    assert outputs["metadata"]["total_cost"] == pytest.approx(sum(costs))


@pytest.mark.slow
def test_flow_run_article_processing_with_an_unpriced_model(fake_openai, tmp_path):
    """What the README suggests for a local server: ``FLOW_ENGINE_MODEL=openai/my-model`` and an api base."""
    script_answers(fake_openai)
    result = run_flow_cli(
        fake_openai.base_url, tmp_path,
        "run", "article_processing", "--json", "--input", "article_text=Cats sleep.",
        FLOW_ENGINE_MODEL=UNPRICED,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["status"] == "completed"
    assert report["outputs"]["summary"] == SUMMARY
    assert report["outputs"]["metadata"] == {"total_tokens": 48 + 80, "total_cost": None}
    assert report["total_cost"] is None and report["unpriced_calls"] == 2
    assert [r.body["model"] for r in fake_openai.chat_requests] == ["my-local-model"] * 2
