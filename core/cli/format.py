"""How the CLI writes runs for people and programs: costs, durations, statuses, JSON of a run.

Shared by every command that shows a run, so a cost or a status reads the same everywhere. Costs are
never shown as a silent $0 when a model had no known price: ``unknown`` (nothing priced) or
``$0.0123+?`` (part priced).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from flow_engine.storage import RunStatus

if TYPE_CHECKING:  # pragma: no cover
    from flow_engine.storage import RunRecord

STATUS_STYLE = {
    "completed": "green",
    "failed": "red",
    "crashed": "magenta",
    "cancelled": "yellow",
    "running": "cyan",
    "pending": "dim",
}


def flow_command(args: str) -> str:
    """A ``flow`` command to suggest, with this command line's ``--db`` so that it finds the same
    database (a password in it shown as ``***``: give it again)."""
    import shlex

    from flow_engine.urls import redact_url

    from .options import given_database

    url = given_database()
    return f"flow --db {shlex.quote(redact_url(url) or url)} {args}" if url else f"flow {args}"


def resume_advice(how: str, error: str | None) -> str:
    """What to do with a run that did not complete: ``how`` is the resume command. A run whose resume
    found the flow's code changed (``ResumeMismatch``) resumes only once that code is back."""
    if (error or "").startswith("ResumeMismatch:"):
        return (
            "The flow's code no longer matches the run's steps: start a new run, or restore the code "
            f"it ran with and resume it: {how}"
        )
    return f"Resume it with: {how} (completed steps are not run again)"


def short_id(run_id: uuid.UUID) -> str:
    return run_id.hex[:8]


def fmt_cost(cost: float | None, unpriced: int = 0) -> str:
    """``$0.0012``; ``unknown`` when nothing was priced; ``$0.0012+?`` when part of it was not."""
    if cost is None or (unpriced and not cost):
        return "unknown"
    if cost == 0:
        text = "$0"
    elif cost < 0.0001:  # a cheap call is not free: never round it to $0.0000
        text = f"${cost:.6f}" if cost >= 0.000001 else "<$0.000001"
    else:
        text = f"${cost:.4f}" if cost < 100 else f"${cost:,.2f}"
    return f"{text}+?" if unpriced else text


def fmt_ms(ms: int | None) -> str:
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def fmt_duration(run: RunRecord) -> str:
    from flow_engine.resume import is_stale

    if run.execution_time_ms is not None:
        return fmt_ms(run.execution_time_ms)
    if run.started_at is not None and run.status == RunStatus.RUNNING.value:
        if is_stale(run):  # it died: how long it ran until its last heartbeat, not a growing clock
            if run.last_heartbeat is None:
                return "-"
            return fmt_ms(int((run.last_heartbeat - run.started_at).total_seconds() * 1000))
        elapsed = datetime.now(UTC) - run.started_at
        return fmt_ms(int(elapsed.total_seconds() * 1000)) + "…"
    return "-"


def fmt_time(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def fmt_progress(run: RunRecord) -> str:
    if run.total_steps:
        return f"{run.step_progress}/{run.total_steps} {run.progress_percentage:.0f}%"
    return f"{run.step_progress} step{'s' if run.step_progress != 1 else ''}"


def esc(text: object) -> str:
    """User text (names, errors) inside rich markup: ``[`` must not start a tag."""
    from rich.markup import escape

    return escape(str(text))


def status_text(status: str) -> str:
    style = STATUS_STYLE.get(status)
    return f"[{style}]{esc(status)}[/]" if style else esc(status)


def run_status_text(run: RunRecord) -> str:
    """A run that says running but whose heartbeat stopped is shown as crashed (its process died)."""
    from flow_engine.resume import display_status

    return status_text(display_status(run))


def json_cost(total_cost: float, unpriced_calls: int) -> dict[str, Any]:
    """A run's cost as every ``--json`` output writes it: ``total_cost`` is ``null`` when any call had no
    known price (the total is unknown, never a silent 0), ``priced_cost`` what the priced calls cost."""
    return {
        "total_cost": None if unpriced_calls else total_cost,
        "priced_cost": total_cost,
        "unpriced_calls": unpriced_calls,
    }


VALUE_LIMIT = 2000  # characters of one text in a human view (`flow show`); --full and --json show all
ITEMS_LIMIT = 50  # items of one list or object in a human view


def shorten(data: Any, limit: int = VALUE_LIMIT) -> Any:
    """``data`` with long texts and long lists cut, each cut saying how much is left out: what a person
    reads of a run whose input is a 20 MB document (the JSON output stays whole)."""
    if isinstance(data, str):
        if len(data) <= limit:
            return data
        return f"{data[:limit]}… [{len(data) - limit:,} more characters; --full shows all]"
    if isinstance(data, dict):
        items = list(data.items())
        cut = {str(k): shorten(v, limit) for k, v in items[:ITEMS_LIMIT]}
        if len(items) > ITEMS_LIMIT:
            cut["…"] = f"{len(items) - ITEMS_LIMIT:,} more keys; --full shows all"
        return cut
    if isinstance(data, list | tuple):
        cut_list = [shorten(v, limit) for v in data[:ITEMS_LIMIT]]
        if len(data) > ITEMS_LIMIT:
            cut_list.append(f"… {len(data) - ITEMS_LIMIT:,} more items; --full shows all")
        return cut_list
    return data


def run_json(run: RunRecord) -> dict[str, Any]:
    """A run record as JSON, ``status`` as a person is shown it: a running run whose heartbeat stopped
    is ``crashed`` (``"stale": true`` says the database still says running; `flow recover` marks it).
    Its cost as ``json_cost`` writes it."""
    from flow_engine.resume import display_status, is_stale

    data = run.model_dump(mode="json")
    data["status"] = display_status(run)
    data["stale"] = is_stale(run)
    data.update(json_cost(run.total_cost, run.unpriced_calls))
    return data


def dump_json(data: Any) -> None:
    """Indented JSON on stdout (``flow runs/show --json``)."""
    click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def echo_json_line(payload: dict[str, Any]) -> None:
    """One JSON object on one line of stdout (``flow run/wait/resume --json``)."""
    click.echo(json.dumps(payload, ensure_ascii=False, default=str))
