"""``flow runs`` and ``flow show``: the run history, read from the store (any backend).

Both print a rich table for people or ``--json`` for programs (the cells are written by ``format``).
A run id may be abbreviated to any unique prefix (``flow show 3f2a``).
"""

from __future__ import annotations

import json
import sys
import uuid
from typing import TYPE_CHECKING, Any

import click

from flow_engine.cli.options import db_option, reads_database
from flow_engine.errors import UsageError
from flow_engine.storage import RunStatus

from .format import (
    VALUE_LIMIT,
    dump_json,
    esc,
    flow_command,
    fmt_cost,
    fmt_duration,
    fmt_progress,
    fmt_time,
    resume_advice,
    run_json,
    run_status_text,
    short_id,
    shorten,
    status_text,
)

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console
    from rich.tree import Tree

    from flow_engine.storage import RunRecord, RunStore, StepRecord


def _console() -> Console:
    from rich.console import Console

    # piped output: wide enough that tables are not squeezed into 80 columns
    return Console(highlight=False, width=None if sys.stdout.isatty() else 200)


def _store() -> RunStore:
    from flow_engine.engine import get_engine

    return get_engine().store


def _where() -> str:
    """The database URL, with a password hidden."""
    from flow_engine.engine import get_engine
    from flow_engine.urls import redact_url

    return redact_url(get_engine().database_url) or ""


# -- flow runs ----------------------------------------------------------------------------------
def _parse_user(value: str | None) -> uuid.UUID | None:
    if value is None:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        raise UsageError(f"--user '{value}' is not a user id (a UUID)") from None


class _RunsGroup(click.Group):
    """``flow runs`` lists runs; its subcommands (``prune``) are modules of their own, imported on use."""

    SUBCOMMANDS = {"prune": "flow_engine.cli.prune_cmd:prune"}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self.SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        import importlib

        target = self.SUBCOMMANDS.get(cmd_name)
        if target is None:
            return None
        module, attr = target.split(":")
        command: click.Command = getattr(importlib.import_module(module), attr)
        return command


@click.group("runs", cls=_RunsGroup, invoke_without_command=True)
@db_option
@click.option("--flow", "flow_name", metavar="NAME", help="Only runs of this flow.")
@click.option(
    "--status",
    type=click.Choice([s.value for s in RunStatus], case_sensitive=False),
    help="Only runs with this status.",
)
@click.option("--user", "user", metavar="ID", help="Only runs of this user id.")
@click.option(
    "--stale",
    is_flag=True,
    help="Only runs that say running but whose heartbeat stopped (their process died): shown as "
    "crashed; `flow recover` marks them so.",
)
@click.option("--batch", "batch_id", metavar="ID", help="Only the runs of this batch (`flow batch`).")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="How many runs.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of run records.")
@reads_database
def runs(
    flow_name: str | None,
    status: str | None,
    user: str | None,
    stale: bool,
    batch_id: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List recorded runs, newest first.

    \b
    Columns: id (a prefix; `flow show ID` accepts it), flow, status,
    progress (done/total steps), tokens, cost ("unknown" or "+?" when a
    model had no known price), duration and start time.

    A run that says running but whose heartbeat is older than
    FLOW_ENGINE_STALE_AFTER seconds is shown (and filtered) as crashed.
    `flow runs prune` deletes old runs.
    """
    if click.get_current_context().invoked_subcommand is not None:
        return
    user_id = _parse_user(user)
    if stale and status:
        raise UsageError(
            "--stale lists running runs whose heartbeat stopped; it cannot be combined with --status"
        )
    if batch_id is not None:
        if stale:
            raise UsageError("--stale cannot be combined with --batch; use --batch ID --status crashed")
        from flow_engine.resume import stale_before
        from flow_engine.storage import RunFilter

        where = RunFilter(
            flow_name=flow_name,
            status=status.lower() if status else None,
            user_id=user_id,
            batch_id=batch_id,
            stale_before=stale_before(),
        )
        records = _store().find_runs(where, limit=limit)
    else:
        records = _query_runs(_store(), flow_name, status.lower() if status else None, user_id, limit, stale)
    if as_json:
        dump_json([run_json(r) for r in records])
        return
    if not records:
        if stale:
            click.echo("No stale runs.")
            return
        filtered = flow_name or status or user or batch_id
        click.echo("No runs match." if filtered else f"No runs recorded yet in {_where()}.")
        return
    _print_runs(records)
    if stale:
        click.echo(
            "Their processes stopped sending heartbeats. `flow recover` marks them crashed; "
            "`flow resume ID` resumes one.",
            err=True,
        )


_ALL = 1_000_000  # running runs are few: read them all to tell live ones from stale ones


def _query_runs(
    store: RunStore,
    flow_name: str | None,
    status: str | None,
    user_id: uuid.UUID | None,
    limit: int,
    stale_only: bool,
) -> list[RunRecord]:
    """Runs as a person sees them: a stale running run counts as crashed, not running."""
    from flow_engine.resume import is_stale

    def query(wanted: str | None, count: int) -> list[RunRecord]:
        return store.list_runs(flow_name=flow_name, status=wanted, user_id=user_id, limit=count)

    if stale_only:
        return [r for r in query(RunStatus.RUNNING.value, _ALL) if is_stale(r)][:limit]
    if status == RunStatus.RUNNING.value:
        return [r for r in query(status, _ALL) if not is_stale(r)][:limit]
    if status == RunStatus.CRASHED.value:
        found = query(status, limit) + [r for r in query(RunStatus.RUNNING.value, _ALL) if is_stale(r)]
        found.sort(key=lambda r: (r.created_at, r.id.hex), reverse=True)  # the store's order: newest first
        return found[:limit]
    return query(status, limit)


def _print_runs(records: list[RunRecord]) -> None:
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    table.add_column("id", no_wrap=True)
    table.add_column("flow", overflow="fold")
    table.add_column("status", no_wrap=True)
    table.add_column("progress", justify="right", no_wrap=True)
    table.add_column("tokens", justify="right", no_wrap=True)
    table.add_column("cost", justify="right", no_wrap=True)
    table.add_column("duration", justify="right", no_wrap=True)
    table.add_column("started", no_wrap=True)
    for run in records:
        flow = esc(run.flow_name)
        if run.parent_run_id is not None:
            flow += f" [dim](child of {short_id(run.parent_run_id)})[/]"
        table.add_row(
            short_id(run.id),
            flow,
            run_status_text(run),
            fmt_progress(run),
            f"{run.total_tokens:,}",
            fmt_cost(run.total_cost, run.unpriced_calls),
            fmt_duration(run),
            fmt_time(run.started_at or run.created_at),
        )
    console = _console()
    console.print(table)
    if any(r.unpriced_calls for r in records):
        console.print("[dim]unknown / +? : some LLM calls used a model without a known price[/]")


# -- flow show ----------------------------------------------------------------------------------
def _tree_data(store: RunStore, run: RunRecord, depth: int = 0) -> dict[str, Any]:
    children = store.list_runs(parent_run_id=run.id, limit=10_000)
    children.sort(key=lambda r: r.created_at)
    return {
        "run": run_json(run),
        "steps": [s.model_dump(mode="json") for s in store.list_steps(run.id)],
        "llm_requests": [r.model_dump(mode="json") for r in store.list_llm_requests(flow_run_id=run.id)],
        "children": [_tree_data(store, child, depth + 1) for child in children] if depth < 50 else [],
    }


@click.command("show")
@db_option
@click.argument("run_id")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the run, its steps, LLM requests and child runs as JSON (values whole).",
)
@click.option(
    "--full", is_flag=True, help=f"Print long values whole (by default cut after {VALUE_LIMIT:,} characters)."
)
@reads_database
def show(run_id: str, as_json: bool, full: bool) -> None:
    """Show one run: inputs, outputs, error, its steps and its child runs.

    RUN_ID may be any unique prefix of the id (as `flow runs` shows it). Long values (a text of
    more than 2,000 characters, a list of more than 50 items) are cut in this view; --full or
    --json shows them whole.
    """
    store = _store()
    run = store.load_run(run_id)
    if as_json:
        dump_json(_tree_data(store, run))
        return
    console = _console()
    _print_detail(console, run, full)
    steps = store.list_steps(run.id)
    console.print()
    if steps:
        console.print(_steps_table(steps))
    else:
        console.print("[dim]No steps recorded.[/]")
    requests = store.list_llm_requests(flow_run_id=run.id)
    if requests:
        console.print()
        console.print(_requests_table(requests, {s.id: s.step_key for s in steps}))
    children = sorted(store.list_runs(parent_run_id=run.id, limit=10_000), key=lambda r: r.created_at)
    if children:
        from rich.tree import Tree

        tree = Tree("[bold]child runs[/]")
        for child in children:
            _add_child(store, tree, child)
        console.print()
        console.print(tree)
    hint = resume_hint(store, run)
    if hint:
        console.print()
        console.print(f"[dim]{esc(hint)}[/]")


def resume_hint(store: RunStore, run: RunRecord) -> str | None:
    """How to go on with a run that did not complete: ``flow resume`` of it, or of its root run."""
    from flow_engine.resume import display_status

    if display_status(run) not in (RunStatus.FAILED, RunStatus.CRASHED, RunStatus.CANCELLED):
        return None
    root = run
    for _ in range(50):
        parent = store.get_run(root.parent_run_id) if root.parent_run_id is not None else None
        if parent is None:
            break
        root = parent
    how = flow_command(f"resume {short_id(root.id)}")
    if root.id != run.id:
        return f"Resume it through its root run: {how} (completed steps are not run again)"
    return resume_advice(how, run.error_message)


def _print_detail(console: Console, run: RunRecord, full: bool) -> None:
    from rich.table import Table

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    rows: list[tuple[str, str]] = [
        ("run", str(run.id)),
        ("flow", esc(run.flow_name)),
        ("status", run_status_text(run)),
    ]
    if run.parent_run_id is not None:
        as_key = f" (as {esc(run.run_key)})" if run.run_key else ""
        rows.append(("parent run", f"{run.parent_run_id}{as_key}"))
    forked = (run.flow_metadata or {}).get("forked_from")
    if isinstance(forked, dict):  # flow fork: the run it reuses steps of, and where it went live
        changed = ", ".join(forked.get("changed_inputs") or []) or "none"
        where = f"{forked.get('run_id')} at step {esc(str(forked.get('step_key')))}"
        rows.append(("forked from", f"{where} (changed inputs: {esc(changed)})"))
    if run.status == "waiting":  # wait_for_input: what it waits for, and how to answer
        from flow_engine.respond import waiting_for

        found = waiting_for(run)
        if found is not None:
            question = found[1].inputs or {}
            fields = ", ".join((question.get("schema") or {}).get("properties") or {}) or "none"
            text = f"input '{esc(found[1].step_key)}' since {fmt_time(found[1].created_at)}"
            if question.get("deadline"):
                text += f", deadline {esc(str(question['deadline']))}"
            if question.get("prompt"):
                text += f": {esc(str(question['prompt']))}"
            rows.append(("waiting for", text))
            rows.append(
                (
                    "answer with",
                    esc(flow_command(f"respond {found[0].id} {found[1].step_key}"))
                    + f" (fields: {esc(fields)})",
                )
            )
    if run.user_id is not None:
        rows.append(("user", str(run.user_id)))
    rows += [
        ("progress", fmt_progress(run) + (f", at {esc(run.current_step)}" if run.current_step else "")),
        ("tokens", f"{run.total_tokens:,}"),
        (
            "cost",
            fmt_cost(run.total_cost, run.unpriced_calls)
            + (f" ({run.unpriced_calls} call(s) without a known price)" if run.unpriced_calls else ""),
        ),
        ("started", fmt_time(run.started_at or run.created_at)),
        ("completed", fmt_time(run.completed_at)),
        ("duration", fmt_duration(run)),
        ("last heartbeat", fmt_time(run.last_heartbeat)),
    ]
    for takeover in (run.flow_metadata or {}).get("takeovers") or []:  # runs taken over from dead workers
        rows.append(("taken over", esc(" ".join(f"{k}={v}" for k, v in takeover.items()))))
    if run.flow_metadata:
        metadata = run.flow_metadata if full else shorten(run.flow_metadata)
        rows.append(("metadata", esc(json.dumps(metadata, ensure_ascii=False, default=str))))
    for key, value in rows:
        grid.add_row(key, value)
    console.print(grid)
    _print_json(console, "inputs", run.inputs, full)
    if run.outputs is not None:
        _print_json(console, "outputs", run.outputs, full)
    if run.error_message:
        from rich.text import Text

        console.print()
        console.print("[bold red]error[/]")
        console.print(
            Text(run.error_message if full else shorten(run.error_message, 4 * VALUE_LIMIT), style="red")
        )


def _print_json(console: Console, title: str, data: Any, full: bool) -> None:
    """Written as plain text, not rendered by rich: a value of megabytes must not take minutes."""
    console.print()
    console.print(f"[bold]{title}[/]")
    text = json.dumps(data if full else shorten(data), ensure_ascii=False, indent=2, default=str)
    console.file.write(text + "\n")
    console.file.flush()


def _first_line(text: str | None, width: int = 100) -> str:
    if not text:
        return ""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= width else line[: width - 1] + "…"


def _steps_table(steps: list[StepRecord]) -> Any:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(title="steps", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("step", overflow="fold")
    table.add_column("type", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("tokens", justify="right", no_wrap=True)
    table.add_column("cost", justify="right", no_wrap=True)
    table.add_column("ms", justify="right", no_wrap=True)
    table.add_column("error", overflow="fold")
    for step in steps:
        table.add_row(
            str(step.step_order),
            Text(step.step_key),
            Text(step.step_type),
            status_text(step.status),
            f"{step.tokens_used:,}",
            fmt_cost(step.cost_estimate, 1 if step.cost_estimate is None else 0),
            "-" if step.execution_time_ms is None else f"{step.execution_time_ms:,}",
            Text(_first_line(step.error_message), style="red"),
        )
    return table


def _requests_table(requests: list[Any], step_keys: dict[Any, str]) -> Any:
    """Each attempt of each LLM call: its step, model, outcome and the HTTP status a server gave."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(
        title="LLM requests", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False
    )
    for name in ("step", "attempt", "model", "status", "HTTP", "tokens", "ms", "error"):
        table.add_column(name, no_wrap=name not in ("step", "model", "error"), overflow="fold")
    for request in requests:
        table.add_row(
            Text(step_keys.get(request.step_run_id, "-")),
            str(request.attempt),
            Text(request.model),
            Text("cache hit", style="cyan")
            if request.cached_from is not None
            else status_text(request.status),
            "-" if request.http_status is None else str(request.http_status),
            f"{request.total_tokens:,}",
            _request_ms(request),
            Text(_first_line(request.error_message), style="red"),
        )
    return table


def _request_ms(request: Any) -> str:
    """The attempt's own time, and its wait for the rate limiter when it had one."""
    own = "-" if request.latency_ms is None else f"{request.latency_ms:,}"
    return f"{own} (+{request.queue_ms:,} queued)" if request.queue_ms else own


def _add_child(store: RunStore, tree: Tree, run: RunRecord, depth: int = 0) -> None:
    label = (
        f"[bold]{esc(run.run_key or run.flow_name)}[/]  {short_id(run.id)}  {run_status_text(run)}  "
        f"{run.total_tokens:,} tokens  {fmt_cost(run.total_cost, run.unpriced_calls)}  {fmt_duration(run)}"
    )
    if run.error_message:
        label += f"  [red]{esc(_first_line(run.error_message, 80))}[/]"
    node = tree.add(label)
    for step in store.list_steps(run.id):
        text = f"{step.step_order}. {esc(step.step_key)}  {status_text(step.status)}"
        text += f"  {step.tokens_used:,} tokens"
        text += f"  {'-' if step.execution_time_ms is None else step.execution_time_ms} ms"
        if step.error_message:
            text += f"  [red]{esc(_first_line(step.error_message, 80))}[/]"
        node.add(text)
    if depth < 50:
        for child in sorted(store.list_runs(parent_run_id=run.id, limit=10_000), key=lambda r: r.created_at):
            _add_child(store, node, child, depth + 1)
