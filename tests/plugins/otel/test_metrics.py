"""Metric values: token usage and duration histograms, runs by flow and status, cost by model."""

from __future__ import annotations

import pytest

from tests.fake_openai_server import Fault, Reply, use_fake_openai

from .conftest import points
from .test_spans import TwoCalls

pytestmark = pytest.mark.usefixtures("no_network")


def _by(collected, name, **attrs):
    return [p for n, p in collected if n == name and all(p.attributes.get(k) == v for k, v in attrs.items())]


async def test_metrics_of_a_run(fake_openai, tmp_path, spans, metric_reader):
    use_fake_openai(fake_openai.base_url, tmp_path, otel=True)
    fake_openai.fail_next(Fault.status(503))
    fake_openai.script(Reply("A summary", usage=(30, 5)), Reply("A title", usage=(12, 3)))
    await TwoCalls().execute({})
    collected = points(metric_reader, None)

    [inputs] = _by(collected, "gen_ai.client.token.usage", **{"gen_ai.token.type": "input"})
    [outputs] = _by(collected, "gen_ai.client.token.usage", **{"gen_ai.token.type": "output"})
    assert (inputs.count, inputs.sum) == (2, 42)
    assert (outputs.count, outputs.sum) == (2, 8)
    assert inputs.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert inputs.attributes["gen_ai.provider.name"] == "openai"

    ok = [p for p in _by(collected, "gen_ai.client.operation.duration") if "error.type" not in p.attributes]
    failed = _by(collected, "gen_ai.client.operation.duration", **{"error.type": "503"})
    assert sum(p.count for p in ok) == 2 and sum(p.count for p in failed) == 1
    assert all(p.sum > 0 for p in ok)

    [runs] = _by(collected, "flow_engine.runs", **{"flow_engine.flow.name": "two_calls"})
    assert runs.attributes["flow_engine.run.status"] == "completed" and runs.value == 1
    [cost] = _by(collected, "flow_engine.llm.cost", **{"gen_ai.request.model": "gpt-4o-mini"})
    assert cost.value > 0

    fake_openai.fail_next(Fault.status(400))
    with pytest.raises(Exception):  # noqa: B017
        await TwoCalls().execute({})
    collected = points(metric_reader, None)
    [failed_runs] = _by(collected, "flow_engine.runs", **{"flow_engine.run.status": "failed"})
    assert failed_runs.value == 1
