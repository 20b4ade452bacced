"""The user guide (the docstring of ``flow_engine.public``) runs: its python blocks, offline, in order.

The blocks continue each other like one Python session with top-level ``await`` (as the guide says),
so they run in one namespace, in document order, on the offline model and this test's SQLite database.
A block that cannot run must be listed in ``SKIPPED`` with the reason; none is today.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import flow_engine.public
from flow_engine.engine import get_engine
from flow_engine.plugin import RunStatus

FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)

# first line of a block -> why it is not run (empty: every block runs)
SKIPPED: dict[str, str] = {}


def guide_blocks() -> list[str]:
    return FENCE.findall(inspect.getdoc(flow_engine.public) or "")


def read(path: str) -> bytes:
    return Path(path).read_bytes()


async def run_block(source: str, namespace: dict[str, Any]) -> None:
    code = compile(source, "<flow_engine.public guide>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    outcome = eval(code, namespace)  # our own documentation
    if code.co_flags & inspect.CO_COROUTINE:
        await outcome


def test_the_guide_has_its_blocks():
    blocks = guide_blocks()
    assert len(blocks) == 2
    assert not set(SKIPPED) - {block.splitlines()[0] for block in blocks}, "SKIPPED names a gone block"


@pytest.fixture
def flow_engine_settings(tmp_path: Path) -> dict[str, Any]:
    """The guide's steps name the seed's templates (extract_content.md, summarize.md): a user keeps
    them in a prompt folder of their own, as the seed tests do (the examples' copies are theirs only)."""
    seed_prompts = Path(__file__).resolve().parent.parent / "seed" / "prompts"
    return {
        "model": None,
        "database_url": f"sqlite:///{tmp_path / 'flow.db'}",
        "prompts_path": str(seed_prompts),
    }


async def test_the_guide_runs_offline(engine, recwarn):
    namespace: dict[str, Any] = {"__name__": "flow_engine_guide"}
    ran = []
    for block in guide_blocks():
        if block.splitlines()[0] in SKIPPED:
            continue
        await run_block(block, namespace)
        ran.append(block)
    assert ran == guide_blocks()
    assert any("no model configured" in str(w.message) for w in recwarn)  # the offline model, as documented

    # the last block ran the flow: its outputs, and a completed run with its three steps recorded
    outputs = namespace["result"]
    assert set(outputs["summary"]) == {"title", "summary", "key_points"}
    assert outputs["metadata"]["words"] > 0 and outputs["metadata"]["total_tokens"] > 0
    [run] = engine.store.list_runs()
    assert (run.flow_name, run.status) == ("article_processing", RunStatus.COMPLETED)
    steps = engine.store.list_steps(run.id)
    assert [step.step_name for step in steps] == ["extract_content", "summarize", "count_words"]

    # the classes the guide defines and does not call work too
    thumbnail = await namespace["CreateThumbnailStep"]().execute({"prompt": "a lighthouse"})
    assert read(thumbnail.output_content["path"]).startswith(b"\x89PNG")
    words = await namespace["CountWordsStep"]().execute({"text": "one two three"})
    assert words.output_content == 3
    summary = await namespace["SummarizeStep"]().execute({"content": "Cats sleep."})
    assert isinstance(summary.output_content, BaseModel)
    assert get_engine() is engine
