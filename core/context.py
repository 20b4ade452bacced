"""The run context: which run and step the current task belongs to (contextvars, no user boilerplate).

``BaseFlow.execute`` sets ``current_run``; ``asyncio.gather`` copies it into each task, so concurrent
steps of one flow share one ``RunContext`` (and its counters) while concurrent flows never see each
other's.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import BudgetExceeded, RunCancelled

if TYPE_CHECKING:  # pragma: no cover
    from .engine import Engine
    from .storage import RunRecord, RunStore, StepRecord


@dataclass
class RunTotals:
    """What a run spent: tokens, the cost of its priced calls, and its calls of unknown cost (with the
    models that had no price), which are never counted as $0."""

    tokens: int = 0
    cost: float = 0.0
    unpriced_calls: int = 0
    unpriced_models: set[str] = field(default_factory=set)

    def add(
        self, tokens: int, cost: float | None, unpriced_calls: int, unpriced_models: Iterable[str] = ()
    ) -> None:
        self.tokens += tokens
        self.cost += cost or 0.0
        self.unpriced_calls += unpriced_calls
        self.unpriced_models.update(unpriced_models)

    def add_totals(self, other: RunTotals) -> None:
        self.add(other.tokens, other.cost, other.unpriced_calls, other.unpriced_models)

    def describe_unpriced(self) -> str:
        """``2 call(s) of unknown cost (no known price for model 'x')``, or '' when every call was priced."""
        if not self.unpriced_calls:
            return ""
        models = ", ".join(f"'{m}'" for m in sorted(self.unpriced_models))
        which = f" (no known price for model {models})" if models else ""
        return f"{self.unpriced_calls} call(s) of unknown cost{which}"


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
    max_cost: float | None = None
    max_tokens: int | None = None
    cancel_requested: bool = False
    cache: bool | None = None  # the response cache for this run (None: as its parent, else the setting)
    # filled when resuming: completed steps by their order, earlier child runs by their run_key
    replay: dict[int, StepRecord] = field(default_factory=dict)
    child_runs: dict[str, RunRecord] = field(default_factory=dict)
    _order: int = 0
    _occurrences: Counter[str] = field(default_factory=Counter)
    _child_occurrences: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # the run id as text, as every step's metadata gives it (made once per run, not once per step)
    run_id_text: str = field(init=False)

    def __post_init__(self) -> None:
        self.run_id_text = str(self.run_id)

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

    def check_boundary(self) -> None:
        """Called before each step starts: stop here if the run was cancelled or is over budget."""
        ctx: RunContext | None = self
        while ctx is not None:
            if ctx.cancel_requested:
                raise RunCancelled(f"run {ctx.run_id} was cancelled; it stopped before its next step")
            ctx = ctx.parent
        if self.max_cost is None and self.max_tokens is None:
            return
        totals = self.totals
        unpriced = totals.describe_unpriced()
        if self.max_cost is not None and totals.cost >= self.max_cost:
            plus = f" plus {unpriced}" if unpriced else ""
            raise BudgetExceeded(
                f"budget exceeded: cost ${totals.cost:.6f}{plus} reached max_cost ${self.max_cost:.6f}; "
                "the run stopped before its next step (resume it with a higher --max-cost)"
            )
        if self.max_cost is not None and unpriced:
            # a dollar limit cannot bound calls whose price nobody knows: never count them as free
            raise BudgetExceeded(
                f"budget cannot be checked: {unpriced}, so max_cost ${self.max_cost:.6f} cannot bound this "
                f"run (its priced calls cost ${totals.cost:.6f}); the run stopped before its next step. "
                "Limit models without a price by tokens instead (flow resume RUN_ID --max-tokens N sets a "
                "new budget without max_cost), or give the model a price (litellm.register_model)"
            )
        if self.max_tokens is not None and totals.tokens >= self.max_tokens:
            spent = f"; cost ${totals.cost:.6f}" + (f" plus {unpriced}" if unpriced else "")
            raise BudgetExceeded(
                f"budget exceeded: {totals.tokens} tokens reached max_tokens {self.max_tokens}{spent}; "
                "the run stopped before its next step (resume it with a higher --max-tokens)"
            )

    def remaining_budget(self) -> tuple[float | None, int | None]:
        """What a child run may still spend of this run's budget."""
        cost = None if self.max_cost is None else max(0.0, self.max_cost - self.totals.cost)
        tokens = None if self.max_tokens is None else max(0, self.max_tokens - self.totals.tokens)
        return cost, tokens

    def cache_wanted(self) -> bool | None:
        ctx: RunContext | None = self
        while ctx is not None:
            if ctx.cache is not None:
                return ctx.cache
            ctx = ctx.parent
        return None

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
    cache: bool | None = None  # the step's own say on the response cache (its class's ``cache``)


current_run: ContextVar[RunContext | None] = ContextVar("flow_engine_current_run", default=None)
current_step: ContextVar[StepScope | None] = ContextVar("flow_engine_current_step", default=None)


def current_run_id() -> uuid.UUID | None:
    """The id of the flow run the calling code runs inside, or None outside any flow."""
    ctx = current_run.get()
    return ctx.run_id if ctx else None
