"""``flow batch FLOW --inputs-file items.jsonl``: one run per line, a live progress bar, a batch id.

Every line is read and checked before the first run starts: a line that is not a JSON object of valid
inputs is reported with its number and skipped (or, with ``--strict``, stops the batch before anything
is written). ``--resume ID`` runs the batch again: completed items are skipped, failed, crashed and
cancelled ones resumed in place, the rest started (with ``--background``: handed to the workers).
``--output`` gets one JSON line per item, in input order, written to a temporary file and renamed at
the end (never half-written).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from flow_engine.cli.options import db_option
from flow_engine.errors import FlowEngineError, InputValidationError, UsageError

from .checks import check_model, check_output_file
from .format import fmt_cost
from .report import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_USAGE

if TYPE_CHECKING:  # pragma: no cover
    from flow_engine.batch import BatchItem, BatchProgress, ItemResult
    from flow_engine.flows import BaseFlow

PLAIN_EVERY_S = 2.0  # without a terminal: a progress line this often


@click.command("batch")
@db_option
@click.argument("target", metavar="FLOW", required=False)
@click.option("--inputs-file", "-f", metavar="FILE", help="JSON Lines: one object of inputs per line.")
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Runs at the same time (a hard cap).",
)
@click.option("--output", "-o", metavar="FILE", help="Write one JSON line per item (input order) here.")
@click.option(
    "--resume", "resume_id", metavar="BATCH_ID", help="Go on with this batch: skip completed items."
)
@click.option("--strict", is_flag=True, help="Stop before running anything if any line is bad.")
@click.option("--model", "-m", metavar="MODEL", help="Run-level model of every run.")
@click.option("--cache/--no-cache", default=None, help="The response cache for these runs (docs/caching.md).")
@click.option("--background", is_flag=True, help="Hand the items to the executor (workers) and return.")
@click.option("--executor", metavar="NAME", help="With --background: the executor.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
def batch(
    target: str | None,
    inputs_file: str | None,
    concurrency: int,
    output: str | None,
    resume_id: str | None,
    strict: bool,
    model: str | None,
    cache: bool | None,
    background: bool,
    executor: str | None,
    as_json: bool,
) -> None:
    """Run FLOW once per line of a JSON Lines file, grouped as one batch.

    \b
    Follow it with `flow runs --batch ID`; go on after a crash or Ctrl-C
    with `flow batch --resume ID`. Exit codes: 0 every item completed;
    1 an item failed or a line was skipped; 2 usage error (nothing run);
    130 interrupted, 143 terminated (the batch can be resumed).
    """
    try:
        if output is not None:  # written at the end: a place that takes no file is refused before any run
            if background:
                raise UsageError("--output writes the results of runs made here; not with --background")
            output = str(check_output_file(output, "--output"))  # ``~`` expanded, as checked
        if model:
            from flow_engine.engine import get_engine

            check_model(model, get_engine())
        plan = _plan(target, inputs_file, resume_id, strict, background, executor)
    except FlowEngineError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    flow_cls, items, bad, batch_id, source, executor = plan
    for line, problem in bad:
        click.echo(f"line {line}: {problem}; skipped", err=True)
    if background:
        _submit_all(flow_cls, items, batch_id, source, model, cache, executor, as_json, len(bad))
        return
    started = time.monotonic()
    display = _Display(batch_id)
    interrupted = _Signals()
    try:
        results = asyncio.run(
            interrupted.cancels(
                _run(flow_cls, items, batch_id, concurrency, model, cache, source, output, display)
            )
        )
    except (KeyboardInterrupt, asyncio.CancelledError):
        display.close()
        why, code = (
            ("terminated (SIGTERM)", EXIT_TERMINATED)
            if interrupted.received
            else ("interrupted", EXIT_INTERRUPTED)
        )
        click.echo(f"Batch {batch_id} {why}; go on with: flow batch --resume {batch_id}", err=True)
        sys.exit(code)
    display.close()
    if output:
        _write_output(Path(output), results)
    _summary(batch_id, results, display.progress, time.monotonic() - started, as_json, len(bad))
    if bad or any(r.status != "completed" for r in results):
        sys.exit(EXIT_FAILED)


def _plan(
    target: str | None,
    inputs_file: str | None,
    resume_id: str | None,
    strict: bool,
    background: bool,
    executor: str | None,
) -> tuple[type[BaseFlow], list[BatchItem], list[tuple[int, str]], str, str | None, str | None]:
    """Everything checked before any run is written: the flow, the items, the batch id."""
    from flow_engine.batch import new_batch_id

    if executor and not background:
        raise UsageError("--executor goes with --background")
    if background:
        from .background import background_executor

        executor = background_executor(executor)
    if resume_id:
        from .options import require_database

        require_database()  # a batch to go on with is recorded: never create an empty database
        flow_cls, source = _resumed(resume_id, target, inputs_file)
        batch_id = resume_id
    else:
        if not target or not inputs_file:
            raise UsageError("give FLOW and --inputs-file FILE (or --resume BATCH_ID)")
        from flow_engine.flow_registry import resolve_flow

        flow_cls = resolve_flow(target)
        source = inputs_file if inputs_file == "-" else str(Path(inputs_file).expanduser().resolve())
        batch_id = new_batch_id()
    items, bad = _read_items(flow_cls, inputs_file or source or "")
    if strict and bad:
        lines = "\n".join(f"line {n}: {problem}" for n, problem in bad)
        raise UsageError(
            f"{len(bad)} bad line(s) in {inputs_file or source}; nothing was run (--strict):\n{lines}"
        )
    if not items:
        raise UsageError(f"no valid items in {inputs_file or source}; nothing was run")
    from flow_engine.engine import get_engine

    get_engine().store  # noqa: B018 - an unreachable database is refused before anything runs
    return flow_cls, items, bad, batch_id, source, executor


def _resumed(batch_id: str, target: str | None, inputs_file: str | None) -> tuple[type[BaseFlow], str | None]:
    """The flow and the inputs file of an earlier batch (from its runs)."""
    from flow_engine.batch import runs_of_batch
    from flow_engine.resume import flow_class_for

    runs = runs_of_batch(batch_id)
    if not runs:
        raise UsageError(f"no runs of batch '{batch_id}'; `flow runs` lists runs with their batch")
    first = next(iter(runs.values()))
    flow_cls = flow_class_for(first)
    if target and target != flow_cls.flow_name:
        raise UsageError(f"batch '{batch_id}' runs flow '{flow_cls.flow_name}', not '{target}'")
    source = ((first.flow_metadata or {}).get("batch") or {}).get("source")
    if not inputs_file and (not source or source == "-"):
        raise UsageError(f"batch '{batch_id}' was read from stdin; give its items again with --inputs-file")
    return flow_cls, inputs_file or source


def _read_items(flow_cls: type[BaseFlow], name: str) -> tuple[list[BatchItem], list[tuple[int, str]]]:
    from flow_engine.batch import BatchItem

    from .inputs import Stdin, read_text

    text = read_text(name, f"--inputs-file {name}", Stdin())
    items: list[BatchItem] = []
    bad: list[tuple[int, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            bad.append((number, f"not valid JSON: {exc.msg} (column {exc.colno})"))
            continue
        except RecursionError:
            bad.append((number, "nested too deeply"))
            continue
        if not isinstance(data, dict):
            bad.append((number, f"expected a JSON object of inputs, got {type(data).__name__}"))
            continue
        try:
            items.append(BatchItem(number, flow_cls.validate_inputs(data)))
        except InputValidationError as exc:
            bad.append((number, " ".join(str(exc).split())))
    return items, bad


async def _run(
    flow_cls: type[BaseFlow],
    items: list[BatchItem],
    batch_id: str,
    concurrency: int,
    model: str | None,
    cache: bool | None,
    source: str | None,
    output: str | None,
    display: _Display,
) -> list[ItemResult]:
    from flow_engine.batch import run_batch

    return await run_batch(
        flow_cls,
        items,
        batch_id=batch_id,
        concurrency=concurrency,
        model=model,
        cache=cache,
        source=source,
        keep_outputs=output is not None,
        on_change=display.update,
    )


def _submit_all(
    flow_cls: type[BaseFlow],
    items: list[BatchItem],
    batch_id: str,
    source: str | None,
    model: str | None,
    cache: bool | None,
    executor: str | None,
    as_json: bool,
    bad: int,
) -> None:
    """Hand the items to the executor (``--background``); on a resumed batch, hand back its failed,
    cancelled and crashed runs and leave the others."""
    from flow_engine.batch import HANDED_BACK, SUBMITTED, submit_batch

    done = asyncio.run(
        submit_batch(
            flow_cls,
            items,
            batch_id=batch_id,
            executor=executor,
            model=model,
            cache=cache,
            source=source,
        )
    )
    new = [r for action, r in done if action == SUBMITTED]
    handed = [r for action, r in done if action == HANDED_BACK]
    left = [r for action, r in done if action not in (SUBMITTED, HANDED_BACK)]
    elsewhere = [r for r in left if r.elsewhere]
    completed = [r for r in left if not r.elsewhere and r.status == "completed"]
    in_progress = len(left) - len(completed) - len(elsewhere)  # pending, running or waiting
    if as_json:
        summary = {
            "batch_id": batch_id,
            "submitted": len(new),
            "handed_back": len(handed),
            "completed_earlier": len(completed),
            "in_progress": in_progress,
            "taken_elsewhere": len(elsewhere),
            "skipped_lines": bad,
            "run_ids": [str(r.run_id) for r in new + handed],
        }
        click.echo(json.dumps(summary))
    parts = [f"{len(new)} run(s) submitted"]
    if handed:
        parts.append(f"{len(handed)} failed, cancelled or crashed run(s) handed back to be resumed")
    if completed:
        parts.append(f"{len(completed)} completed earlier")
    if in_progress:
        parts.append(f"{in_progress} still pending, running or waiting")
    if elsewhere:
        parts.append(f"{len(elsewhere)} taken by another process")
    click.echo(
        f"Batch {batch_id}: {', '.join(parts)}. Follow it with: flow runs --batch {batch_id}",
        err=True,
    )
    if bad:
        sys.exit(EXIT_FAILED)


def _write_output(path: Path, results: list[ItemResult]) -> None:
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", encoding="utf-8") as out:
        for r in results:
            row: dict[str, Any] = {
                "line": r.line,
                "run_id": str(r.run_id) if r.run_id else None,
                "status": r.status,
                "outputs": r.outputs,
                "error": r.error,
            }
            if r.elsewhere:  # another process resuming the batch runs it: its outcome is that run's
                row["elsewhere"] = True
            out.write(json.dumps(row, default=str) + "\n")
    os.replace(partial, path)


def _summary(
    batch_id: str,
    results: list[ItemResult],
    progress: BatchProgress | None,
    seconds: float,
    as_json: bool,
    bad: int,
) -> None:
    elsewhere = sum(r.elsewhere for r in results)
    completed = sum(r.status == "completed" and not r.elsewhere for r in results)
    failed = len(results) - completed - elsewhere
    tokens = progress.tokens if progress else 0
    cost = progress.cost if progress else 0.0
    unpriced = progress.unpriced_calls if progress else 0
    skipped = progress.skipped if progress else 0
    if as_json:
        payload: dict[str, Any] = {
            "batch_id": batch_id,
            "items": len(results),
            "completed": completed,
            "failed": failed,
            "run_elsewhere": elsewhere,
            "already_completed": skipped,
            "skipped_lines": bad,
            "total_tokens": tokens,
            "total_cost": None if unpriced and not cost else cost,
            "unpriced_calls": unpriced,
            "seconds": round(seconds, 3),
        }
        click.echo(json.dumps(payload))
    earlier = f", {skipped} completed earlier" if skipped else ""
    lines = f", {bad} bad line(s) skipped" if bad else ""
    others = f", {elsewhere} run by another process resuming it" if elsewhere else ""
    click.echo(
        f"Batch {batch_id}: {completed} completed, {failed} failed{others}{earlier}{lines} "
        f"in {seconds:.1f}s; "
        f"{tokens:,} tokens, {fmt_cost(cost, unpriced)}",
        err=True,
    )
    if failed:
        click.echo(f"See them with: flow runs --batch {batch_id} --status failed", err=True)


class _Display:
    """The live progress: a rich bar on a terminal, a plain line every few seconds otherwise."""

    def __init__(self, batch_id: str) -> None:
        from .progress import err_console

        self.batch_id = batch_id
        self.progress: BatchProgress | None = None
        self.console = err_console()
        self._bar: Any = None
        self._task: Any = None
        self._last_line = 0.0

    def _describe(self, p: BatchProgress) -> str:
        eta = p.eta()
        left = f"ETA {_duration(eta)}" if eta is not None else "ETA -"
        elsewhere = f", {p.elsewhere} elsewhere" if p.elsewhere else ""
        return (
            f"{p.completed} done, {p.failed} failed{elsewhere}, {p.running} running · {p.rate():.1f}/s · "
            f"{left} · {p.tokens:,} tokens · {fmt_cost(p.cost, p.unpriced_calls)}"
        )

    def update(self, p: BatchProgress) -> None:
        self.progress = p
        if self.console is not None:
            if self._bar is None:
                from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

                self._bar = Progress(
                    TextColumn(f"batch {self.batch_id}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TextColumn("{task.description}"),
                    console=self.console,
                    transient=False,
                )
                self._bar.start()
                self._task = self._bar.add_task("", total=p.total)
            self._bar.update(self._task, completed=p.done, description=self._describe(p))
            return
        now = time.monotonic()
        if now - self._last_line >= PLAIN_EVERY_S:
            self._last_line = now
            self._line(p)

    def _line(self, p: BatchProgress) -> None:
        click.echo(f"[batch {self.batch_id}] {p.done}/{p.total}: {self._describe(p)}", err=True)

    def close(self) -> None:
        """The last state: the bar drawn whole, or a last plain line."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        elif self.progress is not None and self.console is None:
            self._line(self.progress)


class _Signals:
    """SIGTERM cancels the batch as Ctrl-C does: runs in flight are recorded cancelled (resumable)."""

    received = False

    async def cancels(self, work: Any) -> Any:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        def on_sigterm() -> None:
            self.received = True
            task.cancel("terminated (SIGTERM)")

        try:
            loop.add_signal_handler(signal.SIGTERM, on_sigterm)
        except (NotImplementedError, RuntimeError, ValueError):
            return await work
        try:
            return await work
        finally:
            loop.remove_signal_handler(signal.SIGTERM)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{rest:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
