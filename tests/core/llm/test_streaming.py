"""Streaming through the fake OpenAI server's Server-Sent Events (litellm's real streaming path): the
pieces reach the listener in order as they are sent, and what is recorded equals a call that was not
streamed; a stream cut in the middle is retried; the offline model streams too."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from pydantic import BaseModel

from flow_engine import UnstructuredStep
from flow_engine.engine import get_engine
from tests.fake_openai_server import Reply, run_flow_cli, use_fake_openai

PIECES = ["The river ", "runs ", "to the ", "sea."]


class Tell(UnstructuredStep):
    step_name = "tell"
    model = "openai/gpt-4o-mini"

    class Inputs(BaseModel):
        prompt: str


class Offline(Tell):
    step_name = "offline_tell"
    model = "offline/default"


def llm_rows() -> list[Any]:
    return get_engine().store.list_llm_requests()


async def test_pieces_arrive_in_order_while_the_answer_is_written(fake_openai, tmp_path):
    use_fake_openai(fake_openai.base_url, tmp_path)
    # litellm's first stream builds its chunk models (a second or more on a loaded machine), in which
    # time every piece of a timed stream would arrive: warm it up with a stream that is not timed
    fake_openai.script(Reply(chunks=PIECES, usage=(12, 7)))
    await Tell().execute({"prompt": "warm up"}, on_text=lambda piece: None)
    fake_openai.script(Reply(chunks=PIECES, chunk_delay=0.2, usage=(12, 7)))
    seen: list[tuple[float, str]] = []
    result = await Tell().execute(
        {"prompt": "where?"}, on_text=lambda piece: seen.append((time.monotonic(), piece))
    )
    assert [piece for _, piece in seen] == PIECES
    # the first pieces came while the last was still being written (litellm hands over the first
    # few together: it looks ahead at the start of a stream)
    assert seen[-1][0] - seen[0][0] >= 0.15
    assert result.output_content == "The river runs to the sea."
    assert fake_openai.chat_requests[-1].body["stream"] is True

    fake_openai.script(Reply(text="The river runs to the sea.", usage=(12, 7)))
    plain = await Tell().execute({"prompt": "where?"})
    streamed_row, plain_row = llm_rows()[-2:]
    assert plain.output_content == result.output_content
    assert (streamed_row.prompt_tokens, streamed_row.completion_tokens) == (12, 7)
    for field in ("prompt_tokens", "completion_tokens", "total_tokens", "cost", "status"):
        assert getattr(streamed_row, field) == getattr(plain_row, field), field
    assert streamed_row.cost and result.metadata["tokens_used"] == plain.metadata["tokens_used"] == 19


async def test_a_stream_cut_in_the_middle_is_retried(fake_openai, tmp_path):
    use_fake_openai(fake_openai.base_url, tmp_path)
    fake_openai.script(Reply(chunks=PIECES, cut_after=2), Reply(chunks=PIECES, usage=(12, 7)))
    seen: list[str] = []
    result = await Tell().execute({"prompt": "where?"}, on_text=seen.append)
    assert result.output_content == "The river runs to the sea."
    assert seen == PIECES[:2] + PIECES  # the second attempt's text from its start
    assert [r.status for r in llm_rows()] == ["failed", "completed"]


async def test_the_offline_model_streams_word_by_word(engine):
    pieces = [piece async for piece in Offline().stream({"prompt": "tell me about rivers"})]
    assert len(pieces) > 3 and "".join(pieces).startswith("[offline:default]")
    plain = await Offline().execute({"prompt": "tell me about rivers"})
    assert "".join(pieces) == plain.output_content
    streamed_row, plain_row = llm_rows()
    assert streamed_row.total_tokens == plain_row.total_tokens > 0


STORY = """
from pydantic import BaseModel
from flow_engine import BaseFlow, UnstructuredStep


class Tell(UnstructuredStep):
    step_name = "tell"
    model = "offline/default"

    class Inputs(BaseModel):
        prompt: str


class Story(BaseFlow):
    flow_name = "stream_story"

    async def _execute_flow_logic(self, inputs):
        first = (await Tell().execute({"prompt": "a story about tides"})).output_content
        second = (await Tell().execute({"prompt": "a story about dunes"})).output_content
        return {"text": first + second}
"""


@pytest.mark.slow
def test_flow_run_stream_prints_the_text_as_it_comes(fake_openai, tmp_path):
    (tmp_path / "story.py").write_text(STORY, encoding="utf-8")
    result = run_flow_cli(
        fake_openai.base_url, tmp_path, "run", f"{tmp_path / 'story.py'}:Story", "--stream", "--json"
    )
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    tides = next(
        i for i, line in enumerate(lines) if line.startswith("[offline:default] a story about tides")
    )
    assert lines[tides - 1].startswith("→ tell") and lines[tides + 1].startswith("✓ tell")  # readable
    assert any(line.startswith("[offline:default] a story about dunes") for line in lines)
    assert json.loads(result.stdout)["status"] == "completed"  # stdout: the one JSON object


async def test_cancelled_mid_stream_the_run_is_recorded_and_resumable(fake_openai, tmp_path):
    import asyncio

    from flow_engine import BaseFlow, resume_run
    from flow_engine.llm.streaming import listening

    class Telling(BaseFlow):
        flow_name = "stream_cancel"

        async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
            return {"text": (await Tell().execute({"prompt": "where?"})).output_content}

    use_fake_openai(fake_openai.base_url, tmp_path)
    fake_openai.script(Reply(chunks=PIECES, chunk_delay=0.5), Reply(chunks=PIECES))
    first = asyncio.Event()
    flow = Telling()
    with listening(lambda piece: first.set()):  # like Ctrl-C under `flow run --stream`
        task = asyncio.ensure_future(flow.execute({}))
        await asyncio.wait_for(first.wait(), 10)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
    store = get_engine().store
    assert store.get_run(flow.run_id).status == "cancelled"
    assert [r.status for r in llm_rows()] == ["cancelled"]
    outputs = await resume_run(flow.run_id)
    assert outputs == {"text": "The river runs to the sea."}
