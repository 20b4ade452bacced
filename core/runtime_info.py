"""Events handed to lifecycle hooks: what is running, and how it ended."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any


@dataclass
class FlowEvent:
    run_id: uuid.UUID
    flow_name: str
    inputs: dict[str, Any]
    parent_run_id: uuid.UUID | None = None
    # the parent run's step that started this child run (None: started by the flow's own code)
    parent_step_id: uuid.UUID | None = None
    # the run's budget as it applies (its own, else what is left of its parent's); None: no limit
    max_cost: float | None = None
    max_tokens: int | None = None
    outputs: dict[str, Any] | None = None
    error: BaseException | None = None
    status: str | None = None  # how the run ended, once it has: completed, failed, cancelled, waiting
    # what the run spent in all (earlier attempts and child runs included), once it has ended
    total_tokens: int | None = None
    total_cost: float | None = None
    # added in this release, after the fields a plugin may give by position
    user_id: uuid.UUID | None = None
    # the run's flow_metadata as stored when it started (what submit_metadata hooks added among it)
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepEvent:
    run_id: uuid.UUID | None
    step_id: uuid.UUID | None
    step_name: str
    step_key: str | None
    step_type: str
    step_order: int | None
    total_steps: int | None
    inputs: dict[str, Any]
    result: Any = None
    error: BaseException | None = None
    replayed: bool = False  # after_step of a step a resumed run replayed from its stored result
