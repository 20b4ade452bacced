"""Batches: one run of a flow per item, at most ``concurrency`` at once, grouped by a batch id.

Every run of a batch carries the batch id (``flow_runs.batch_id``, ``flow runs --batch ID``) and, in
``flow_metadata["batch"]``, its item's line in the inputs file and the file's path. Resuming a batch
(``run_batch`` with the same id, ``flow batch --resume ID``) skips the items whose run completed,
resumes in place the runs that failed, crashed or were cancelled (their completed steps replay), and
starts the items that never got a run. Runs are created as workers take items, so a batch of 10,000
items holds ``concurrency`` runs in memory, not 10,000 (``benchmarks/bench_batch.py``).

A batch has one run per item: the store refuses a second run for a line (``RunRecord.batch_line``),
and a resumed run is claimed before it runs, so two resumes of one batch at once never run an item
twice; the one that finds an item taken reports it as run elsewhere (``ItemResult.elsewhere``).

``submit_batch`` hands a batch to an executor's workers instead; on a batch that has runs, it hands
back the failed, cancelled and crashed ones (``flow_runner.resubmit``) for the workers to resume.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import flow_runner
from .engine import get_engine
from .errors import RunTaken, RunWaiting, StorageError
from .jsonable import describe_error
from .storage import RunFilter, RunRecord, RunStatus

if TYPE_CHECKING:  # pragma: no cover
    from .flows import BaseFlow

__all__ = [
    "BatchItem",
    "BatchProgress",
    "ItemResult",
    "new_batch_id",
    "run_batch",
    "runs_of_batch",
    "submit_batch",
]


def new_batch_id() -> str:
    """A short id a person can type: 12 hex digits."""
    return uuid.uuid4().hex[:12]


@dataclass(frozen=True)
class BatchItem:
    """One item: its line in the inputs file (1-based) and its validated inputs."""

    line: int
    inputs: dict[str, Any]


@dataclass
class ItemResult:
    line: int
    run_id: uuid.UUID | None
    status: str
    outputs: dict[str, Any] | None = None
    error: str | None = None
    elsewhere: bool = False  # another process (resuming the same batch) runs this item


@dataclass
class BatchProgress:
    """What a progress display shows; updated as items start and end."""

    total: int
    completed: int = 0
    failed: int = 0
    running: int = 0
    skipped: int = 0  # completed in an earlier attempt of the batch: not run again
    elsewhere: int = 0  # run by another process resuming the same batch at the same time
    tokens: int = 0
    cost: float = 0.0
    unpriced_calls: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def done(self) -> int:
        return self.completed + self.failed + self.elsewhere

    def rate(self) -> float:
        """Items ended per second in this attempt (skipped ones are not work)."""
        elapsed = time.monotonic() - self.started
        worked = self.done - self.skipped
        return worked / elapsed if elapsed > 0 and worked > 0 else 0.0

    def eta(self) -> float | None:
        rate = self.rate()
        return (self.total - self.done) / rate if rate > 0 else None


def runs_of_batch(batch_id: str) -> dict[int, RunRecord]:
    """The runs of a batch by their item's line (the newest run of a line, if it has several)."""
    store = get_engine().store
    found: dict[int, RunRecord] = {}
    offset, page = 0, 1000
    while True:
        runs = store.find_runs(RunFilter(batch_id=batch_id), limit=page, offset=offset)
        for run in runs:  # newest first: the first run seen of a line is the one that counts
            line = ((run.flow_metadata or {}).get("batch") or {}).get("line")
            if isinstance(line, int) and line not in found:
                found[line] = run
        if len(runs) < page:
            return found
        offset += page


async def run_batch(
    flow_cls: type[BaseFlow],
    items: Sequence[BatchItem],
    *,
    batch_id: str,
    concurrency: int = 8,
    model: str | None = None,
    cache: bool | None = None,
    source: str | None = None,
    keep_outputs: bool = True,
    on_change: Callable[[BatchProgress], None] | None = None,
    totals_every: float = 1.0,
) -> list[ItemResult]:
    """Run ``flow_cls`` once per item (or resume the batch ``batch_id``); results in item order.

    A failed item never stops the others; its run holds the error. ``keep_outputs=False`` keeps only
    each item's status (a large batch whose outputs are read from the store later). ``on_change``
    hears of each item's start and end, and of the batch's tokens and cost every ``totals_every`` s."""
    earlier = await asyncio.to_thread(runs_of_batch, batch_id)
    progress = BatchProgress(total=len(items))
    results: list[ItemResult | None] = [None] * len(items)
    queue = iter(enumerate(items))
    store = get_engine().store
    tell = on_change or (lambda _progress: None)

    async def run_item(item: BatchItem, before: RunRecord | None) -> ItemResult:
        flow = flow_cls()
        try:
            if before is not None:
                outputs = await flow_runner.resume(flow, before, model=model, claim=True)
            else:
                filed = _filed(batch_id, item, source)
                outputs = await flow_runner.start(flow, item.inputs, model=model, cache=cache, **filed)
            return ItemResult(
                item.line, flow.run_id, RunStatus.COMPLETED.value, outputs if keep_outputs else None
            )
        except RunWaiting:
            return ItemResult(item.line, flow.run_id, RunStatus.WAITING.value)
        except RunTaken:  # the run of this item another process resumes (or still runs)
            run_id = before.id if before is not None else flow.run_id
            now = await asyncio.to_thread(store.get_run, run_id) if run_id is not None else None
            status = now.status if now is not None else RunStatus.RUNNING.value
            why = f"run {run_id} is being run by another process (resuming batch {batch_id}, or still)"
            return ItemResult(item.line, run_id, status, error=why, elsewhere=True)
        except StorageError as exc:
            taken = await _taken_elsewhere(batch_id, item, flow.run_id) if before is None else None
            if taken is not None:
                return taken
            return ItemResult(item.line, flow.run_id, RunStatus.FAILED.value, error=describe_error(exc))
        except Exception as exc:
            return ItemResult(item.line, flow.run_id, RunStatus.FAILED.value, error=describe_error(exc))

    async def worker() -> None:
        for index, item in queue:  # shared by the workers: each takes the next item when it is free
            before = earlier.get(item.line)
            if before is not None and before.status == RunStatus.COMPLETED:
                results[index] = ItemResult(
                    item.line, before.id, before.status, before.outputs if keep_outputs else None
                )
                progress.skipped += 1
                progress.completed += 1
                tell(progress)
                continue
            progress.running += 1
            tell(progress)
            try:
                result = await run_item(item, before)
            finally:
                progress.running -= 1
            results[index] = result
            if result.elsewhere:
                progress.elsewhere += 1
            elif result.status == RunStatus.COMPLETED:
                progress.completed += 1
            else:
                progress.failed += 1
                if result.run_id is not None and result.error is None:
                    run = await asyncio.to_thread(store.get_run, result.run_id)
                    result.error = run.error_message if run is not None else None
            tell(progress)

    async def spent() -> None:
        """Tokens and cost so far: one sum over the batch's runs now and then, not a read per item."""
        totals = await asyncio.to_thread(store.run_totals, RunFilter(batch_id=batch_id))
        progress.tokens, progress.cost = totals.total_tokens, totals.total_cost
        progress.unpriced_calls = totals.unpriced_calls
        tell(progress)

    async def keep_adding_up() -> None:
        while True:
            await asyncio.sleep(totals_every)
            await spent()

    adding_up = asyncio.create_task(keep_adding_up())
    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(min(concurrency, len(items)) or 0):
                group.create_task(worker())
    finally:
        adding_up.cancel()
    await spent()
    return [r for r in results if r is not None]


def _filed(batch_id: str, item: BatchItem, source: str | None) -> dict[str, Any]:
    """What files an item's run under its batch: the id and line (one run per line, the store sees to
    it), and in ``flow_metadata["batch"]`` the line and the inputs file too."""
    metadata = {"batch": {"id": batch_id, "line": item.line, "source": source}}
    return {"batch_id": batch_id, "batch_line": item.line, "metadata": metadata}


async def _taken_elsewhere(batch_id: str, item: BatchItem, refused: uuid.UUID | None) -> ItemResult | None:
    """The item's run, if another process started it (``refused``, ours, was a second one)."""
    where = RunFilter(batch_id=batch_id, batch_line=item.line)
    found = await asyncio.to_thread(get_engine().store.find_runs, where, limit=1)
    if not found or found[0].id == refused:
        return None
    other = found[0]
    why = f"run {other.id} of another process resuming batch {batch_id} has this item"
    return ItemResult(item.line, other.id, other.status, error=why, elsewhere=True)


SUBMITTED = "submitted"  # a new run, handed to the executor
HANDED_BACK = "handed back"  # a failed, cancelled or crashed run, handed back to be resumed by a worker
LEFT = "left"  # a run already completed, or still pending, running or waiting: left as it is


async def submit_batch(
    flow_cls: type[BaseFlow],
    items: Sequence[BatchItem],
    *,
    batch_id: str,
    executor: str | None = None,
    model: str | None = None,
    cache: bool | None = None,
    source: str | None = None,
) -> list[tuple[str, ItemResult]]:
    """Hand a batch to ``executor``'s workers and return, item by item, what was done: a new run
    ``submitted`` for each line without one; on a batch that has runs (resumed in the background),
    each failed, cancelled or crashed run ``handed back`` to be resumed in place, and each run that
    completed or is still pending, running or waiting ``left`` alone. A run another process took first
    is ``left`` too, its result marked ``elsewhere``."""
    earlier = await asyncio.to_thread(runs_of_batch, batch_id)
    done: list[tuple[str, ItemResult]] = []
    for item in items:
        before = earlier.get(item.line)
        if before is None:
            flow = flow_cls()
            filed = _filed(batch_id, item, source)
            try:
                run_id = await flow_runner.submit(
                    flow, item.inputs, executor=executor, model=model, cache=cache, **filed
                )
            except StorageError:
                taken = await _taken_elsewhere(batch_id, item, flow.run_id)
                if taken is None:
                    raise
                done.append((LEFT, taken))
                continue
            done.append((SUBMITTED, ItemResult(item.line, run_id, RunStatus.PENDING.value)))
            continue
        crashed = flow_runner.is_stale(before)  # said running, its process died
        ended = before.status in (RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.CRASHED)
        if not (ended or crashed):  # completed, or pending, running or waiting: not ours to touch
            done.append((LEFT, ItemResult(item.line, before.id, before.status)))
        elif await flow_runner.resubmit(before, flow_cls, executor=executor):
            done.append((HANDED_BACK, ItemResult(item.line, before.id, RunStatus.PENDING.value)))
        else:
            now = await asyncio.to_thread(get_engine().store.get_run, before.id)
            status = now.status if now is not None else before.status
            why = f"run {before.id} was taken by another process a moment ago"
            done.append((LEFT, ItemResult(item.line, before.id, status, error=why, elsewhere=True)))
    return done
