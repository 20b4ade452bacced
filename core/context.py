"""The run context: which run and step the current task belongs to (contextvars, no user boilerplate).

``BaseFlow.execute`` sets ``current_run``; ``asyncio.gather`` copies it into each task, so concurrent
steps of one flow share one ``RunContext`` (and its counters) while concurrent flows never see each
other's.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .engine import Engine
    from .storage import RunStore


@dataclass
class RunTotals:
    tokens: int = 0
    cost: float = 0.0
    unpriced_calls: int = 0

    def add(self, tokens: int, cost: float | None, unpriced_calls: int) -> None:
        self.tokens += tokens
        self.cost += cost or 0.0
        self.unpriced_calls += unpriced_calls


@dataclass
class RunContext:
    run_id: uuid.UUID
    flow_name: str
    engine: Engine
    store: RunStore
    parent: RunContext | None = None
    user_id: uuid.UUID | None = None
    model: str | None = None
    total_steps: int | None = None
    totals: RunTotals = field(default_factory=RunTotals)
    completed_steps: int = 0
    _order: int = 0
    _occurrences: Counter[str] = field(default_factory=Counter)
    _child_occurrences: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def next_step_slot(self, step_name: str) -> tuple[int, str]:
        """Order in the run and stable key (``name`` or ``name#N`` for the N-th occurrence)."""
        with self._lock:
            self._order += 1
            self._occurrences[step_name] += 1
            n = self._occurrences[step_name]
            return self._order, step_name if n == 1 else f"{step_name}#{n}"

    def next_child_key(self, flow_name: str) -> str:
        with self._lock:
            self._child_occurrences[flow_name] += 1
            n = self._child_occurrences[flow_name]
            return flow_name if n == 1 else f"{flow_name}#{n}"

    def run_level_model(self) -> str | None:
        ctx: RunContext | None = self
        while ctx is not None:
            if ctx.model:
                return ctx.model
            ctx = ctx.parent
        return None


@dataclass
class StepScope:
    """The step now running in this task: LLM calls made inside it are attributed to it."""

    run_id: uuid.UUID | None
    step_id: uuid.UUID | None
    step_name: str
    model_override: str | None = None
    calls: list[Any] = field(default_factory=list)


current_run: ContextVar[RunContext | None] = ContextVar("flow_engine_current_run", default=None)
current_step: ContextVar[StepScope | None] = ContextVar("flow_engine_current_step", default=None)


def current_run_id() -> uuid.UUID | None:
    """The id of the flow run the calling code runs inside, or None outside any flow."""
    ctx = current_run.get()
    return ctx.run_id if ctx else None
