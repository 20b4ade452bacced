"""``flow runs prune``: delete old finished runs, their steps, LLM requests, child runs and artifacts.

The store deletes in short batches (flows that are running keep writing meanwhile) and calls back
after each committed batch; the artifacts of those runs (the folder per run under the artifacts
folder, where image steps save their files) are removed then. A run still running, pending or
waiting for input is never deleted, nor any run of its tree.
"""

from __future__ import annotations

import shutil
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from flow_engine.cli.ages import parse_age
from flow_engine.cli.options import db_option, reads_database
from flow_engine.errors import UsageError
from flow_engine.storage import PRUNABLE_STATUSES, PRUNE_BATCH

if TYPE_CHECKING:  # pragma: no cover
    from flow_engine.storage import PruneResult


def parse_before(text: str) -> datetime:
    """An ISO date (midnight UTC) or date and time (UTC unless it says otherwise)."""
    try:
        if len(text.strip()) == 10:
            day = date.fromisoformat(text.strip())
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"--before '{text}' is not a date (2026-01-31) or date and time") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def cutoff(before: str | None, older_than: str | None, use_setting: bool, now: datetime) -> datetime:
    """The moment before which runs go: ``--before``, ``--older-than``, or ``FLOW_ENGINE_RETENTION``."""
    given = [name for name, value in (("--before", before), ("--older-than", older_than)) if value]
    if use_setting:
        given.append("--retention")
    if len(given) > 1:
        raise UsageError(f"give one of {', '.join(given)}, not several")
    if before:
        return parse_before(before)
    if older_than:
        return now - parse_age(older_than)
    from flow_engine.engine import get_engine

    retention = get_engine().settings.retention
    if not retention:
        raise UsageError(
            "nothing says which runs are old: give --before DATE or --older-than AGE (e.g. 90d), "
            "or set FLOW_ENGINE_RETENTION"
        )
    return now - parse_age(retention, "FLOW_ENGINE_RETENTION")


class Artifacts:
    """The artifact folders of pruned runs: counted, and removed unless it is a dry run."""

    def __init__(self, root: Path, dry_run: bool):
        self.root = root
        self.dry_run = dry_run
        self.files = 0
        self.bytes = 0

    def __call__(self, run_ids: list[uuid.UUID]) -> None:
        for run_id in run_ids:
            folder = self.root / str(run_id)
            if not folder.is_dir():
                continue
            for path in folder.rglob("*"):
                if path.is_file():
                    self.files += 1
                    self.bytes += path.stat().st_size
            if not self.dry_run:
                shutil.rmtree(folder, ignore_errors=True)


def _size(count: int) -> str:
    value = float(count)
    for unit in ("KB", "MB", "GB"):
        value /= 1024
        if value < 1024 or unit == "GB":
            return f"{value:.1f} {unit}" if count >= 1024 else f"{count} bytes"
    return f"{count} bytes"  # pragma: no cover - the loop returns


def report(result: PruneResult, artifacts: Artifacts, when: datetime, dry_run: bool) -> None:
    verb = "Would remove" if dry_run else "Removed"
    click.echo(f"{verb} runs created before {when:%Y-%m-%d %H:%M:%S} UTC:")
    children = f" (and {result.child_runs:,} child runs)" if result.child_runs else ""
    click.echo(f"  flow_runs       {result.runs + result.child_runs:>12,}  {result.runs:,} runs{children}")
    click.echo(f"  flow_step_runs  {result.steps:>12,}")
    click.echo(f"  llm_requests    {result.llm_requests:>12,}")
    click.echo(f"  artifacts       {artifacts.files:>12,}  files, {_size(artifacts.bytes)}")
    if result.bytes_freed is not None:
        click.echo(f"  database        {_size(result.bytes_freed):>12}  returned to the file system")
    freed = artifacts.bytes + (result.bytes_freed or 0)
    if not dry_run:
        click.echo(f"Freed {_size(freed)} in all.")
    if result.space_note:
        click.echo(result.space_note, err=True)


@click.command("prune")
@db_option
@click.option("--before", metavar="DATE", help="Runs created before this date (UTC), e.g. 2026-01-31.")
@click.option("--older-than", metavar="AGE", help="Runs older than this: 90d, 12h, 2w, 30m.")
@click.option(
    "--retention",
    "use_setting",
    is_flag=True,
    help="Runs older than FLOW_ENGINE_RETENTION (also the default when no bound is given).",
)
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(list(PRUNABLE_STATUSES), case_sensitive=False),
    help="Only runs with this status (repeat for several); default every finished status.",
)
@click.option("--flow", "flow_name", metavar="NAME", help="Only runs of this flow.")
@click.option("--dry-run", is_flag=True, help="Count what would go; change nothing.")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=PRUNE_BATCH,
    show_default=True,
    help="Runs deleted per transaction (each holds the database's write lock briefly).",
)
@reads_database
def prune(
    before: str | None,
    older_than: str | None,
    use_setting: bool,
    statuses: tuple[str, ...],
    flow_name: str | None,
    dry_run: bool,
    batch_size: int,
) -> None:
    """Delete old finished runs with their steps, LLM requests, child runs and artifacts.

    \b
    Runs that are running, pending or waiting for input are never deleted,
    nor the runs of their tree. A child run goes with its top-level run, whose age, status
    and flow decide. Schedule it (cron, a systemd timer) to keep history
    to FLOW_ENGINE_RETENTION: `flow runs prune` with no bound uses it.
    """
    when = cutoff(before, older_than, use_setting, datetime.now(UTC))
    from flow_engine.engine import get_engine

    engine = get_engine()
    artifacts = Artifacts(engine.artifacts_dir, dry_run)
    try:
        result = engine.store.prune_runs(
            when,
            statuses=[s.lower() for s in statuses] or None,
            flow_name=flow_name,
            dry_run=dry_run,
            batch_size=batch_size,
            on_batch=artifacts,
        )
    except NotImplementedError:
        raise UsageError(f"the storage backend of {engine.store!r} cannot prune runs") from None
    report(result, artifacts, when, dry_run)
