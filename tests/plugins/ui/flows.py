"""Flows the viewer's tests run for real (importable by module path, so ``flow resume`` finds them).

``GatedFlow`` waits before each step for a file ``go-N`` in ``gate_dir``: a test decides when the run
moves on, and watches the page follow it. Its middle step calls the model (the offline model unless
the engine says otherwise), with the prompt given as input. ``FlakyFlow`` fails its second step until
the file ``fixed`` exists in ``marker_dir``; resuming it then completes it. ``ReviewFlow`` waits for a
person's ``Review``.

Run as a module, it executes one ``GatedFlow`` (the live tests start it in another process)::

    python -m tests.plugins.ui.flows DATABASE_URL GATE_DIR PROMPT
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from flow_engine import BaseFlow, BaseStep, UnstructuredStep


async def _wait_for(path: Path, limit: float = 120.0) -> None:
    deadline = time.monotonic() + limit
    while not path.exists():  # noqa: ASYNC240 - a test gate, polled
        if time.monotonic() > deadline:
            raise TimeoutError(f"gate {path} never opened")
        await asyncio.sleep(0.05)


class GateStep(BaseStep):
    step_name = "wait_for_gate"

    class Inputs(BaseModel):
        gate: str

    async def run(self, inputs: Any) -> str:
        await _wait_for(Path(inputs.gate))
        return f"passed {Path(inputs.gate).name}"


class AskStep(UnstructuredStep):
    step_name = "ask_model"

    class Inputs(BaseModel):
        prompt: str


class GatedFlow(BaseFlow):
    """Three steps, each waiting for its gate file; the second asks the model."""

    flow_name = "ui_gated"
    total_steps = 3

    class Inputs(BaseModel):
        gate_dir: str
        prompt: str = "Say hello"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        gates = Path(inputs["gate_dir"])
        first = await GateStep().execute({"gate": str(gates / "go-1")})
        await _wait_for(gates / "go-2")
        answer = await AskStep().execute({"prompt": inputs["prompt"]})
        third = await GateStep().execute({"gate": str(gates / "go-3")})
        return {"first": first.output_content, "answer": answer.output_content, "third": third.output_content}


class CountStep(BaseStep):
    step_name = "count"

    class Inputs(BaseModel):
        marker_dir: str

    async def run(self, inputs: Any) -> int:
        runs = Path(inputs.marker_dir) / "count-runs"
        done = int(runs.read_text()) + 1 if runs.exists() else 1
        runs.write_text(str(done))
        return done


class FragileStep(BaseStep):
    step_name = "fragile"

    class Inputs(BaseModel):
        marker_dir: str

    async def run(self, inputs: Any) -> str:
        if not (Path(inputs.marker_dir) / "fixed").exists():
            raise RuntimeError("not fixed yet")
        return "fixed"


class FlakyFlow(BaseFlow):
    flow_name = "ui_flaky"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        count = await CountStep().execute({"marker_dir": inputs["marker_dir"]})
        fragile = await FragileStep().execute({"marker_dir": inputs["marker_dir"]})
        return {"count": count.output_content, "fragile": fragile.output_content}


class Review(BaseModel):
    """The answer a person gives ``ReviewFlow``: one field of each kind the viewer's form draws."""

    approved: bool
    level: Literal["low", "high"]
    comment: str = ""
    score: int | None = Field(default=None, description="1 to 5")
    tags: list[str] = []


class ReviewFlow(BaseFlow):
    """Counts (a step done before the wait), waits for a ``Review``, then returns it."""

    flow_name = "ui_review"

    class Inputs(BaseModel):
        marker_dir: str

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        count = await CountStep().execute({"marker_dir": inputs["marker_dir"]})
        review = await self.wait_for_input("review", Review, prompt="Approve the <b>draft</b>?")
        return {"count": count.output_content, "review": review.model_dump()}


class ReviewParent(BaseFlow):
    """A ``ReviewFlow`` as a child run: the parent waits through it."""

    flow_name = "ui_review_parent"

    class Inputs(BaseModel):
        marker_dir: str

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"child": await ReviewFlow().execute({"marker_dir": inputs["marker_dir"]})}


def main(argv: list[str]) -> None:
    import threading

    from flow_engine import configure
    from flow_engine.llm.loader import load_litellm

    database_url, gate_dir, prompt = argv
    configure(database_url=database_url, heartbeat_interval=0.3)
    # litellm takes seconds to import: start now, while the first gate is still closed
    threading.Thread(target=load_litellm, daemon=True).start()
    try:
        asyncio.run(GatedFlow().execute({"gate_dir": gate_dir, "prompt": prompt}))
    except Exception as exc:  # cancelled or failed: the store has the story
        print(f"flow ended: {type(exc).__name__}: {exc}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
