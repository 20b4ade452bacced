"""Faults of the LLM server at the level of a run: what a person finds after the retries and re-asks
gave up (the run and the failed step say why and what to do, every attempt is in ``llm_requests``,
`flow show` displays it), and that the failed run resumes once the fault is gone without calling the
LLM again for the step that had completed.

Retrying and re-asking themselves (one call) are tested in tests/core/llm and tests/plugins."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import BaseModel

from flow_engine import BaseFlow, StructuredStep, UnstructuredStep, resume_run
from flow_engine.errors import LLMError
from tests.fake_openai_server import FakeOpenAI, Fault, Reply, use_fake_openai

MODEL = "openai/gpt-4o-mini"


@pytest.fixture(autouse=True)
def _no_network(no_network: None) -> None:
    pass


class Ask(UnstructuredStep):
    step_name = "ask"

    class Inputs(BaseModel):
        prompt: str


class AskElsewhere(Ask):
    """The second step, at another server (a test sets ``api_base``: where nothing listens)."""

    step_name = "ask"


class Pick(StructuredStep):
    step_name = "pick"

    class Inputs(BaseModel):
        prompt: str

    class Outputs(BaseModel):
        count: int


class TwoCalls(BaseFlow):
    """An LLM step that works, then the step the fault hits."""

    flow_name = "two_calls"

    class Inputs(BaseModel):
        structured: bool = False
        elsewhere: bool = False

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        first = await Ask().execute({"prompt": "[first] Say hello."})
        if inputs["structured"]:
            second = (await Pick().execute({"prompt": "[second] Count the rivers."})).output_content.count
        else:
            step = AskElsewhere() if inputs["elsewhere"] else Ask()
            second = (await step.execute({"prompt": "[second] Say goodbye."})).output_content
        return {"first": first.output_content, "second": second}


# fault -> (how the server misbehaves on the second step, what the message must say)
Arrange = Callable[[FakeOpenAI], None]
FAULTS: dict[str, tuple[Arrange, list[str]]] = {
    "429 with Retry-After": (
        lambda s: s.answer("[second]", Fault.status(429, retry_after=0.2)),
        ["HTTP 429", "Rate limit reached", "gave up after 3 attempt(s)", "rate-limiting", "try again later"],
    ),
    "500": (
        lambda s: s.answer("[second]", Fault.status(500)),
        ["HTTP 500", "gave up after 3 attempt(s)", "the provider may be down"],
    ),
    "timeout": (
        lambda s: s.answer("[second]", Fault.hang(5)),
        ["no answer within", "gave up after", "FLOW_ENGINE_REQUEST_TIMEOUT"],
    ),
    "malformed JSON": (
        lambda s: s.answer("[second]", Fault.malformed()),
        ["Expecting value", "gave up after 3 attempt(s)"],
    ),
    "connection refused": (lambda s: None, ["connection refused at", "gave up after 3 attempt(s)"]),
    "schema-invalid answers": (
        lambda s: s.answer("[second]", Reply(json={"count": "many"})),
        [
            "gave no valid Outputs in 3 answer(s) (2 re-ask(s) allowed)",
            "- count: Input should be a valid integer",
        ],
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_final_failure_leaves_a_failed_run_that_says_why_and_resumes(
    fault: str, fake_openai: FakeOpenAI, refused_base_url: str, tmp_path: Any, monkeypatch: Any
) -> None:
    arrange, phrases = FAULTS[fault]
    refused = fault == "connection refused"
    structured = fault == "schema-invalid answers"
    engine = use_fake_openai(
        fake_openai.base_url,
        tmp_path,
        database_url=f"sqlite:///{tmp_path / 'flow.db'}",
        model=MODEL,
        request_timeout=0.3,
        retry_max_delay=1.0,
    )
    store = engine.store
    flow = TwoCalls()

    if refused:  # the first step reaches the server, the second finds nothing listening
        monkeypatch.setattr(AskElsewhere, "api_base", refused_base_url)

    async def run_it() -> None:
        await Ask().execute({"prompt": "warm-up"})  # litellm loaded before the clock matters
        fake_openai.reset()
        arrange(fake_openai)
        await flow.execute({"structured": structured, "elsewhere": refused})

    with pytest.raises(LLMError):
        asyncio.run(run_it())
    run = store.get_run(flow.run_id)
    first, second = store.list_steps(flow.run_id)
    assert (run.status, first.status, second.status) == ("failed", "completed", "failed")
    assert run.error_message == second.error_message  # the run says what the step said
    kind = "StructuredOutputError" if structured else "LLMRequestError"
    assert run.error_message.startswith(f"{kind}: ")
    for phrase in phrases:
        assert phrase in run.error_message, (phrase, run.error_message)
    if not structured:  # which model, and where: what a person checks first
        assert f"with model '{MODEL}'" in run.error_message
        where = refused_base_url if refused else fake_openai.base_url
        assert f"at {where}" in run.error_message
    assert run.current_step == ("pick" if structured else "ask#2")

    # every attempt (or every answer) of the failed step is in llm_requests
    attempts = store.list_llm_requests(step_run_id=second.id)
    if structured:
        assert [(a.attempt, a.status) for a in attempts] == [(1, "completed")] * 3
        assert all(a.response["choices"][0]["message"]["content"] == '{"count": "many"}' for a in attempts)
        assert second.tokens_used == sum(a.total_tokens for a in attempts) > 0  # paid for, though invalid
    else:
        tries = (
            2 if fault == "timeout" else 3
        )  # a timeout is retried fewer times (FLOW_ENGINE_TIMEOUT_RETRIES)
        assert [(a.attempt, a.status) for a in attempts] == [(n, "failed") for n in range(1, tries + 1)]
        assert len({a.call_id for a in attempts}) == 1 and all(a.error_message for a in attempts)
        assert second.tokens_used == 0 and second.llm_request_id is None
    if fault == "429 with Retry-After":  # the server's hint was waited for between attempts
        times = [r.received_at for r in fake_openai.chat_requests if "[second]" in r.text]
        assert len(times) == 3 and all(b - a >= 0.19 for a, b in itertools.pairwise(times))

    # `flow show` displays it: the run's error, the failed step's first line, how to go on
    shown = CliRunner().invoke(_cli(), ["show", flow.run_id.hex[:8]], catch_exceptions=False)
    assert shown.exit_code == 0
    out = " ".join(shown.stdout.split())  # rich wraps long lines
    assert "status failed" in out and phrases[0] in out
    step_rows = [line for line in shown.stdout.splitlines() if line.split()[:2] == ["2", second.step_key]]
    assert len(step_rows) == 1 and "failed" in step_rows[0] and kind in step_rows[0]
    assert f"Resume it with: flow resume {flow.run_id.hex[:8]}" in out

    # the fault is gone: resuming finishes the run without calling the LLM for the first step again
    fake_openai.reset()
    fake_openai.answer("[second]", Reply(json={"count": 3}) if structured else Reply("goodbye"))
    monkeypatch.setattr(AskElsewhere, "api_base", None)  # the server is back
    outputs = asyncio.run(resume_run(flow.run_id))
    assert outputs["second"] == (3 if structured else "goodbye")
    assert [r.text for r in fake_openai.chat_requests if "[first]" in r.text] == []
    resumed = store.get_run(flow.run_id)
    assert resumed.status == "completed" and resumed.error_message is None
    [history] = resumed.flow_metadata["resumed"]
    assert history["previous_status"] == "failed" and history["error"] == run.error_message


def _cli() -> Any:
    from flow_engine.cli.main import cli

    return cli
