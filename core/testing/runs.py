"""``load_run``: a finished run as the database holds it, for assertions in tests.

What a test should check is what was recorded (status, every step's inputs and output, the prompts sent,
tokens, child runs), not only what ``execute()`` returned; this gathers it in one object.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from ..engine import get_engine
from ..storage import LLMRequestRecord, RunRecord, StepRecord


@dataclass
class LoadedRun:
    """A run row, its step rows (in order), its ``llm_requests`` rows (oldest first) and child runs."""

    run: RunRecord
    steps: list[StepRecord]
    llm_requests: list[LLMRequestRecord]
    children: list[LoadedRun] = field(default_factory=list)

    @property
    def status(self) -> str:
        return self.run.status

    @property
    def outputs(self) -> dict[str, Any] | None:
        return self.run.outputs

    def step(self, key: str) -> StepRecord:
        """The step row by its key: the step name, or ``name#2`` for its second occurrence."""
        for step in self.steps:
            if step.step_key == key:
                return step
        keys = ", ".join(s.step_key for s in self.steps) or "none"
        raise KeyError(f"run {self.run.id} ({self.run.flow_name}) has no step {key!r}; its steps: {keys}")

    def output(self, key: str) -> Any:
        """A step's stored output (``output_content``, as JSON)."""
        return (self.step(key).outputs or {}).get("output_content")

    def requests_for(self, key: str) -> list[LLMRequestRecord]:
        """The ``llm_requests`` rows (every attempt) made by one step."""
        step_id = self.step(key).id
        return [r for r in self.llm_requests if r.step_run_id == step_id]

    def child(self, flow_name: str) -> LoadedRun:
        """A child run by its key (``flow_name``, or ``flow_name#2``) or flow name."""
        for child in self.children:
            if flow_name in (child.run.run_key, child.run.flow_name):
                return child
        names = ", ".join(c.run.run_key or c.run.flow_name for c in self.children) or "none"
        raise KeyError(f"run {self.run.id} has no child run {flow_name!r}; its children: {names}")


def load_run(run: uuid.UUID | str | Any) -> LoadedRun:
    """Load a run by id (a UUID, its text, a unique prefix) or from a flow that ran (``flow.run_id``)."""
    run_id = getattr(run, "run_id", run)
    if run_id is None:
        raise ValueError(f"{type(run).__name__} has not run yet: it has no run_id")
    store = get_engine().store
    record = store.load_run(run_id)
    children = store.list_runs(parent_run_id=record.id, limit=10_000)
    children.sort(key=lambda r: r.created_at)
    return LoadedRun(
        run=record,
        steps=store.list_steps(record.id),
        llm_requests=store.list_llm_requests(flow_run_id=record.id),
        children=[load_run(child.id) for child in children],
    )
