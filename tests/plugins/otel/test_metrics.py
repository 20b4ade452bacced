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
    # the buckets the GenAI conventions give each histogram (the SDK's defaults are for milliseconds)
    assert list(inputs.explicit_bounds) == [4.0**i for i in range(14)]

    ok = [p for p in _by(collected, "gen_ai.client.operation.duration") if "error.type" not in p.attributes]
    failed = _by(collected, "gen_ai.client.operation.duration", **{"error.type": "503"})
    assert sum(p.count for p in ok) == 2 and sum(p.count for p in failed) == 1
    assert all(p.sum > 0 for p in ok)
    assert list(ok[0].explicit_bounds) == pytest.approx([0.01 * 2**i for i in range(14)])

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


async def test_exemplars_point_at_the_llm_call_that_was_measured(fake_openai, tmp_path, spans, metric_reader):
    """A metric record's exemplar names the span of the call measured, not whichever span is current
    when the burst of spans and records is made (the run's, or another run's on the timer)."""
    use_fake_openai(fake_openai.base_url, tmp_path, otel=True)
    fake_openai.script(Reply("A summary", usage=(30, 5)), Reply("A title", usage=(12, 3)))
    await TwoCalls().execute({})
    calls = {s.context.span_id: s for s in spans.get_finished_spans() if s.name == "chat gpt-4o-mini"}
    assert len(calls) == 2
    collected = points(metric_reader, None)

    [inputs] = _by(collected, "gen_ai.client.token.usage", **{"gen_ai.token.type": "input"})
    by_value = {e.value: e for e in inputs.exemplars}
    assert set(by_value) == {30, 12}  # one exemplar per bucket: 30 and 12 fall in different ones
    for value, exemplar in by_value.items():
        call = calls[exemplar.span_id]
        assert call.attributes["gen_ai.usage.input_tokens"] == value
        assert exemplar.trace_id == call.context.trace_id
    durations = [e for p in _by(collected, "gen_ai.client.operation.duration") for e in p.exemplars]
    assert durations and all(e.span_id in calls for e in durations)
    [cost] = _by(collected, "flow_engine.llm.cost", **{"gen_ai.request.model": "gpt-4o-mini"})
    assert cost.exemplars and all(e.span_id in calls for e in cost.exemplars)
    # one record for the burst of both steps, their sum
    assert cost.value == pytest.approx(sum(c.attributes["flow_engine.llm.cost"] for c in calls.values()))
    [run_span] = [s for s in spans.get_finished_spans() if s.name == "invoke_workflow two_calls"]
    [runs] = _by(collected, "flow_engine.runs", **{"flow_engine.flow.name": "two_calls"})
    assert [e.span_id for e in runs.exemplars] == [run_span.context.span_id]
