"""The storage contract the runner talks to; backends (SQL, memory, ...) are plugins chosen by URL scheme.

The runner never sees SQL. It awaits every write (so a finished step is stored before the next one
starts) and a backend must not block the event loop while doing it. Reads are synchronous: the CLI and
reports use them outside any loop.
"""

from __future__ import annotations

import enum
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict

from pydantic import BaseModel, ConfigDict, Field

from .errors import ConfigurationError, NotFoundError, StorageError, UsageError
from .ids import new_id

__all__ = [
    "INTERRUPTED",
    "INTERRUPTED_MESSAGE",
    "IN_FLIGHT",
    "CacheEntry",
    "CacheModelStats",
    "LLMRequestRecord",
    "RunChanges",
    "RunRecord",
    "RunStatus",
    "RunStore",
    "StepChanges",
    "StepRecord",
    "StorageBackendInfo",
    "StorageError",
    "claimable",
    "pick_backend",
    "scheme_of",
    "utcnow",
]


def utcnow() -> datetime:
    return datetime.now(UTC)


class RunStatus(enum.StrEnum):
    """Statuses of runs and steps. Whether a run has ended is ``flow_runner.has_ended``."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    CRASHED = "crashed"
    WAITING = "waiting"  # stopped at ``wait_for_input`` until answered (``respond_to_run``, ``flow respond``)


_LIST_RUNS = "`flow runs` lists the recorded runs"


class _Record(BaseModel):
    model_config = ConfigDict(validate_assignment=False, extra="forbid")


class RunRecord(_Record):
    """One row of ``flow_runs``: the seed's fields plus ``parent_run_id`` and ``run_key``."""

    id: uuid.UUID = Field(default_factory=new_id)
    user_id: uuid.UUID | None = None
    flow_name: str
    parent_run_id: uuid.UUID | None = None
    run_key: str | None = None
    status: str = RunStatus.PENDING.value
    execution_mode: str = "sync"
    current_step: str | None = None
    step_progress: int = 0
    total_steps: int | None = None
    progress_percentage: float = 0.0
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    completed_at: datetime | None = None
    last_heartbeat: datetime | None = None
    total_tokens: int = 0
    total_cost: float = 0.0
    unpriced_calls: int = 0
    execution_time_ms: int | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)
    outputs: dict[str, Any] | None = None
    flow_metadata: dict[str, Any] | None = None
    error_message: str | None = None
    # who executes the run (a worker's id), set by ``RunStore.claim_run``; None for in-process runs
    claimed_by: str | None = None
    # the ``flow batch`` the run belongs to (``flow runs --batch ID``)
    batch_id: str | None = None
    # its item's line in the batch's inputs: one run per line of a batch, a store refuses a second
    # (two ``flow batch --resume`` of one batch at once must not start an item twice)
    batch_line: int | None = None


class StepRecord(_Record):
    """One row of ``flow_step_runs``. ``step_key`` is step name + occurrence in the run (``summarize#2``)."""

    id: uuid.UUID = Field(default_factory=new_id)
    flow_run_id: uuid.UUID
    llm_request_id: uuid.UUID | None = None
    step_name: str
    step_key: str
    step_type: str
    step_order: int
    status: str = RunStatus.RUNNING.value
    inputs: dict[str, Any] = Field(default_factory=dict)
    outputs: dict[str, Any] | None = None
    tokens_used: int = 0
    cost_estimate: float | None = 0.0
    execution_time_ms: int | None = None
    error_message: str | None = None
    step_metadata: dict[str, Any] | None = None
    created_at: datetime = Field(default_factory=utcnow)
    completed_at: datetime | None = None


# statuses of an LLM request row besides completed / failed / cancelled: sent and not answered yet, and
# sent but cut short because its process died (SIGKILL, a lost worker); see RunStore.records_in_flight
IN_FLIGHT = "in_flight"
INTERRUPTED = "interrupted"
INTERRUPTED_MESSAGE = "the process making this request died before the answer came (the run crashed)"


class LLMRequestRecord(_Record):
    """One row of ``llm_requests``: one attempt of one LLM call. Never holds keys or auth headers."""

    id: uuid.UUID = Field(default_factory=new_id)
    flow_run_id: uuid.UUID | None = None
    step_run_id: uuid.UUID | None = None
    call_id: uuid.UUID = Field(default_factory=new_id)
    kind: str = "completion"
    model: str
    provider: str | None = None
    api_base: str | None = None
    request_messages: list[dict[str, Any]] | None = None
    request_params: dict[str, Any] | None = None
    response: dict[str, Any] | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost: float | None = None
    latency_ms: int | None = None
    attempt: int = 1
    status: str = "completed"
    http_status: int | None = None  # the status a server really answered with; None: no answer
    error_message: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    queue_ms: int | None = None  # time waiting for the rate limiter (FLOW_ENGINE_RATE_LIMITS) before sending
    cached_from: uuid.UUID | None = None  # a response-cache hit: the request whose answer was reused


class CacheEntry(_Record):
    """One answer kept by the response cache (``docs/caching.md``): what a call with the same model,
    messages, parameters and output schema gets instead of a request. ``request_id`` is the request
    that paid for it, ``cost`` what it cost then (what each hit saves)."""

    key: str
    kind: str = "completion"
    model: str
    response: dict[str, Any]
    request_id: uuid.UUID | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None
    hits: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime | None = None
    last_hit_at: datetime | None = None


@dataclass(frozen=True)
class CacheModelStats:
    """The response cache's entries of one model (``RunStore.cache_stats``)."""

    model: str
    entries: int
    hits: int
    saved_cost: float  # what the hits would have cost (entries of unknown price count 0)
    oldest: datetime | None
    newest: datetime | None


class RunChanges(TypedDict, total=False):
    """The columns of a run that a write may change, one key each: a misspelt key fails type checking
    (and a backend refuses it at run time). Identity and creation fields never change."""

    status: str
    execution_mode: str
    current_step: str | None
    step_progress: int
    total_steps: int | None
    progress_percentage: float
    started_at: datetime | None
    completed_at: datetime | None
    last_heartbeat: datetime | None
    total_tokens: int
    total_cost: float
    unpriced_calls: int
    execution_time_ms: int | None
    outputs: dict[str, Any] | None
    flow_metadata: dict[str, Any] | None
    error_message: str | None
    claimed_by: str | None


class StepChanges(TypedDict, total=False):
    """The columns of a step that ``finish_step`` may change (see :class:`RunChanges`)."""

    status: str
    llm_request_id: uuid.UUID | None
    outputs: dict[str, Any] | None
    tokens_used: int
    cost_estimate: float | None
    execution_time_ms: int | None
    error_message: str | None
    step_metadata: dict[str, Any] | None
    completed_at: datetime | None


PRUNABLE_STATUSES = (
    RunStatus.COMPLETED.value,
    RunStatus.FAILED.value,
    RunStatus.CANCELLED.value,
    RunStatus.CRASHED.value,
)
PRUNE_BATCH = 200  # root runs per transaction of a prune: a few ms of write lock each


def prunable_statuses(statuses: Sequence[str] | None) -> list[str]:
    """The statuses a prune selects (default: every terminal one); a live status is refused."""
    wanted = [str(s) for s in statuses] if statuses else list(PRUNABLE_STATUSES)
    refused = [s for s in wanted if s not in PRUNABLE_STATUSES]
    if refused:
        raise UsageError(
            f"runs that are {', '.join(refused)} are never pruned; prune takes {', '.join(PRUNABLE_STATUSES)}"
        )
    return wanted


@dataclass
class PruneResult:
    """What ``RunStore.prune_runs`` removed (or would remove): rows per table, and the database space
    given back to the file system (``None`` where the backend does not know; ``space_note`` says how to
    get it back then)."""

    runs: int = 0
    child_runs: int = 0
    steps: int = 0
    llm_requests: int = 0
    bytes_freed: int | None = None
    space_note: str = ""


@dataclass(frozen=True)
class RunFilter:
    """Which runs a listing wants (every field given must match). With ``stale_before`` set, ``status``
    is the status a person is shown: ``crashed`` takes in running runs whose heartbeat is older than it
    (their process died), and ``running`` leaves them out. ``created_from`` is inclusive,
    ``created_until`` exclusive."""

    flow_name: str | None = None
    status: str | None = None
    user_id: uuid.UUID | None = None
    parent_run_id: uuid.UUID | None = None
    created_from: datetime | None = None
    created_until: datetime | None = None
    stale_before: datetime | None = None
    batch_id: str | None = None
    batch_line: int | None = None

    def matches(self, run: RunRecord) -> bool:
        if self.flow_name is not None and run.flow_name != self.flow_name:
            return False
        if self.batch_id is not None and run.batch_id != self.batch_id:
            return False
        if self.batch_line is not None and run.batch_line != self.batch_line:
            return False
        if self.user_id is not None and run.user_id != self.user_id:
            return False
        if self.parent_run_id is not None and run.parent_run_id != self.parent_run_id:
            return False
        if self.created_from is not None and run.created_at < self.created_from:
            return False
        if self.created_until is not None and run.created_at >= self.created_until:
            return False
        return self.status is None or self.shown_status(run) == self.status

    def shown_status(self, run: RunRecord) -> str:
        if self.stale_before is not None and run.status == RunStatus.RUNNING:
            if run.last_heartbeat is None or run.last_heartbeat < self.stale_before:
                return RunStatus.CRASHED.value
        return run.status


@dataclass(frozen=True)
class RunTotals:
    """Sums over a filtered set of runs (``RunStore.run_totals``)."""

    runs: int = 0
    total_tokens: int = 0
    total_cost: float = 0.0
    unpriced_calls: int = 0
    execution_time_ms: int = 0


class RunStore(ABC):
    """What a storage backend implements. Writes are ``async`` and awaited by the runner.

    A change set names only columns of :class:`RunChanges` / :class:`StepChanges`; a backend raises
    ``KeyError`` for any other key, before writing anything. A read or write the database refuses
    raises :class:`~flow_engine.errors.StorageError`. ``flow_engine.testing.store_contract`` holds the
    tests every backend must pass.

    A step or request record passed to ``start_step`` / ``record_llm_request`` belongs to the store
    from then on (the engine never changes it afterwards), so a store may keep it as it is; the run
    record of ``create_run`` is still used by the caller. Reads hand out records the caller may change.
    """

    url: str

    # -- writes -----------------------------------------------------------------------------
    @abstractmethod
    async def create_run(self, run: RunRecord) -> None: ...

    @abstractmethod
    async def update_run(self, run_id: uuid.UUID, changes: RunChanges) -> None: ...

    @abstractmethod
    async def start_step(self, step: StepRecord, run_changes: RunChanges) -> None:
        """Insert the step row and apply ``run_changes`` to its run, in one transaction.

        For a running step a backend may return before the row is committed, if it commits it no
        later than the step's ``finish_step`` (or as soon as the step awaits anything) and raises a
        failure to store it from that ``finish_step``: the SQL backend does, so that a quick step
        costs one commit rather than two."""

    @abstractmethod
    async def finish_step(
        self, step_id: uuid.UUID, step_changes: StepChanges, run_id: uuid.UUID, run_changes: RunChanges
    ) -> bool | None:
        """Update the step row and its run, in one transaction; return True when a cancel was requested."""

    @abstractmethod
    async def record_llm_request(self, request: LLMRequestRecord) -> None: ...

    #: True when the store can replace a request row (``finish_llm_request``): the engine then writes
    #: each network attempt as ``in_flight`` before sending it, so one cut short by SIGKILL still has
    #: a row (made ``interrupted`` by ``mark_crashed`` / ``prepare_resume``). A store without it gets one
    #: row per attempt once the attempt ends, as before.
    records_in_flight: bool = False

    async def finish_llm_request(self, request: LLMRequestRecord) -> None:
        """Replace the ``in_flight`` row with the same id by ``request`` (the attempt's outcome)."""
        raise NotImplementedError

    # -- the response cache (optional) -----------------------------------------------------------
    #: True when the store keeps the response cache (``cache_get`` and the rest); the engine refuses
    #: to turn the cache on for a store without it, naming the store.
    has_cache: bool = False

    async def cache_get(self, key: str, now: datetime) -> CacheEntry | None:
        """The entry under ``key`` unless it expired by ``now``; a found entry counts one hit
        (``hits`` + 1, ``last_hit_at`` = now), in the same transaction."""
        raise NotImplementedError

    async def cache_put(self, entry: CacheEntry) -> None:
        """Keep ``entry``, replacing one with the same key (two processes asking the same question at
        once both pay, and the later answer stays)."""
        raise NotImplementedError

    def cache_stats(self) -> list[CacheModelStats]:
        """Entries, hits and saved cost per model, most entries first."""
        raise NotImplementedError

    def cache_clear(self, *, model: str | None = None, older_than: datetime | None = None) -> int:
        """Delete entries (of ``model``; created before ``older_than``); return how many."""
        raise NotImplementedError

    # -- durable execution (resume, heartbeat, cancel, crash detection) ---------------------
    async def heartbeat(self, run_id: uuid.UUID, at: datetime) -> bool:
        """Set ``last_heartbeat``; return True when a cancel was requested for the run."""
        raise NotImplementedError

    async def prepare_resume(self, run_id: uuid.UUID, run_changes: RunChanges) -> None:
        """Delete the run's steps that did not complete, mark its ``in_flight`` LLM requests
        ``interrupted`` and apply ``run_changes``, in one transaction."""
        raise NotImplementedError

    async def request_cancel(self, run_id: uuid.UUID) -> str:
        """Ask a run to stop. Returns its status after the request: ``running`` (it will stop at its next
        step boundary), ``cancelled`` (it was pending or its process is gone), or a terminal status
        unchanged."""
        raise NotImplementedError

    async def mark_crashed(self, stale_before: datetime, run_id: uuid.UUID | None = None) -> list[uuid.UUID]:
        """Mark running runs whose heartbeat is older than ``stale_before`` as crashed, and their
        ``in_flight`` LLM requests ``interrupted``; return their ids."""
        raise NotImplementedError

    # -- background execution ----------------------------------------------------------------
    async def claim_run(self, run_id: uuid.UUID, owner: str, stale_before: datetime) -> bool:
        """Take a submitted run for execution by ``owner``, atomically; True when this caller got it.

        One conditional write: a run that is ``pending``, ``crashed``, ``waiting`` (its answer has come),
        or ``running`` with a heartbeat
        older than ``stale_before`` (its executor died) becomes ``running``, ``claimed_by=owner``, with
        ``last_heartbeat`` = now (and ``started_at`` = that same instant if it had none: executors tell
        a first start from a takeover by it). Any other run is left alone and False returned, so of
        two workers handed the same run only one executes it.
        """
        raise NotImplementedError

    async def claim_ended_run(self, run_id: uuid.UUID, owner: str) -> bool:
        """Take a ``failed`` or ``cancelled`` run to resume it, atomically; True when this caller got it.

        One conditional write, as ``claim_run``: such a run becomes ``running``, ``claimed_by=owner``,
        with ``last_heartbeat`` = now; any other is left alone and False returned, so of two processes
        resuming the same run at once (two ``flow batch --resume`` of one batch) only one runs it. A
        backend without it raises NotImplementedError, and such runs are resumed unclaimed."""
        raise NotImplementedError

    def list_orphaned_runs(
        self,
        executor: str,
        stale_before: datetime,
        pending_before: datetime | None = None,
        limit: int = 100,
    ) -> list[RunRecord]:
        """Top-level background runs of ``executor`` that no live process executes, for workers'
        recovery scans: ``running`` with a heartbeat older than ``stale_before`` (most recently
        stopped first), then, if ``pending_before`` is given, ``pending`` since before it (oldest
        first); at most ``limit`` of each. A read, so it may be stale: take a run only through
        ``claim_run``. Workers of every deployment ask this often: answer it from an index on
        ``(status, last_heartbeat)``, not by reading every run."""
        raise NotImplementedError

    # -- retention (flow runs prune) ----------------------------------------------------------
    def prune_runs(
        self,
        before: datetime,
        *,
        statuses: Sequence[str] | None = None,
        flow_name: str | None = None,
        dry_run: bool = False,
        batch_size: int = PRUNE_BATCH,
        on_batch: Callable[[list[uuid.UUID]], None] | None = None,
    ) -> PruneResult:
        """Delete finished runs created before ``before`` with their steps, LLM requests and child runs.

        Only top-level runs are selected (a child run goes with its root run), with a status in
        ``statuses`` (default: every terminal one) and, if given, the flow ``flow_name``. A tree that
        holds a run not finished (running, pending, waiting for input) is left whole. Deleted in
        batches of ``batch_size`` root runs, each its own short transaction, so flows that are
        running keep writing meanwhile; ``on_batch`` gets the ids (roots and children) of each
        batch once it is committed (the caller removes their artifacts). ``dry_run`` counts what
        would go and changes nothing.
        """
        raise NotImplementedError

    # -- reads ------------------------------------------------------------------------------
    @abstractmethod
    def get_run(self, run_id: uuid.UUID) -> RunRecord | None: ...

    @abstractmethod
    def list_runs(
        self,
        *,
        flow_name: str | None = None,
        status: str | None = None,
        user_id: uuid.UUID | None = None,
        parent_run_id: uuid.UUID | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[RunRecord]:
        """Newest first."""

    def find_runs(self, where: RunFilter, *, limit: int = 50, offset: int = 0) -> list[RunRecord]:
        """Runs matching ``where``, newest first. This default filters ``list_runs`` in Python (it reads
        every run of the flow/user); backends override it with a query."""
        return [r for r in self._candidates(where) if where.matches(r)][offset : offset + limit]

    def run_totals(self, where: RunFilter) -> RunTotals:
        """Count, tokens, cost, unpriced calls and run time of the runs matching ``where``."""
        runs = [r for r in self._candidates(where) if where.matches(r)]
        return RunTotals(
            runs=len(runs),
            total_tokens=sum(r.total_tokens for r in runs),
            total_cost=sum(r.total_cost for r in runs),
            unpriced_calls=sum(r.unpriced_calls for r in runs),
            execution_time_ms=sum(r.execution_time_ms or 0 for r in runs),
        )

    def _candidates(self, where: RunFilter) -> list[RunRecord]:
        return self.list_runs(
            flow_name=where.flow_name,
            user_id=where.user_id,
            parent_run_id=where.parent_run_id,
            limit=2**62,
        )

    @abstractmethod
    def list_steps(self, run_id: uuid.UUID) -> list[StepRecord]:
        """Steps of one run in ``step_order``."""

    @abstractmethod
    def list_llm_requests(
        self, *, flow_run_id: uuid.UUID | None = None, step_run_id: uuid.UUID | None = None
    ) -> list[LLMRequestRecord]:
        """Oldest first."""

    @abstractmethod
    def run_ids_with_prefix(self, prefix: str, limit: int = 2) -> list[uuid.UUID]: ...

    def close(self) -> None:  # noqa: B027 - optional for backends
        """Release connections and threads."""

    # -- shared helpers ---------------------------------------------------------------------
    def load_run(self, ref: uuid.UUID | str) -> RunRecord:
        """The run a person or caller named: its id (a UUID or its text) or a unique prefix of it.

        The one way every command and API finds a run by id, so they all fail alike: ``NotFoundError``
        naming ``ref``, ``UsageError`` for an ambiguous prefix or text that is no id."""
        run_id = ref if isinstance(ref, uuid.UUID) else self.resolve_run_id(str(ref))
        run = self.get_run(run_id)
        if run is None:
            raise NotFoundError(f"no run with id {ref}; {_LIST_RUNS}")
        return run

    def resolve_run_id(self, text: str) -> uuid.UUID:
        """A full run id or a unique prefix of one (hex, dashes optional)."""
        cleaned = text.strip().lower()
        try:
            return uuid.UUID(cleaned)
        except ValueError:
            pass
        if not cleaned or any(ch not in "0123456789abcdef-" for ch in cleaned):
            raise UsageError(f"'{text}' is not a run id or a prefix of one")
        matches = self.run_ids_with_prefix(cleaned, limit=2)
        if not matches:
            raise NotFoundError(f"no run with id starting '{text}'; {_LIST_RUNS}")
        if len(matches) > 1:
            raise UsageError(f"run id prefix '{text}' is ambiguous; give more characters")
        return matches[0]


def claimable(run: RunRecord, stale_before: datetime) -> bool:
    """What ``claim_run`` may take: pending, crashed, waiting (to be answered), or running with a stale
    heartbeat."""
    if run.status in (RunStatus.PENDING, RunStatus.CRASHED, RunStatus.WAITING):
        return True
    stale = run.last_heartbeat is None or run.last_heartbeat < stale_before
    return run.status == RunStatus.RUNNING and stale


@dataclass(frozen=True)
class StorageBackendInfo:
    """What a plugin registers: the URL schemes it serves and a factory ``(url) -> RunStore``.
    ``local_path(url)``: the local file a URL stores into, if any (artifacts go beside it)."""

    name: str
    schemes: tuple[str, ...]
    factory: Callable[[str], RunStore]
    description: str = ""
    local_path: Callable[[str], Path | None] | None = None
    plugin: str = field(default="", compare=False)


def scheme_of(url: str) -> str:
    """``postgresql+psycopg://...`` -> ``postgresql+psycopg``; a bare path is not a URL."""
    if "://" not in url:
        raise ConfigurationError(
            f"database URL '{url}' has no scheme; use e.g. sqlite:///path/to/file.db or postgresql+psycopg://..."
        )
    return url.split("://", 1)[0].lower()


def pick_backend(url: str, backends: list[StorageBackendInfo]) -> StorageBackendInfo:
    scheme = scheme_of(url)
    base = scheme.split("+", 1)[0]
    for backend in backends:
        if scheme in backend.schemes or base in backend.schemes:
            return backend
    installed = ", ".join(f"{b.name} ({'/'.join(b.schemes)})" for b in backends) or "none"
    raise ConfigurationError(f"no storage backend for URL scheme '{scheme}'; installed backends: {installed}")
