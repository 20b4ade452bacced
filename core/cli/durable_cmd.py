"""``flow resume``, ``flow cancel``, ``flow recover``: durable execution from the command line."""

from __future__ import annotations

import asyncio
import sys

import click

from flow_engine.cli.options import db_option, finite_seconds, finite_usd, reads_database
from flow_engine.errors import FlowEngineError, UsageError

from .checks import check_model
from .foreground import run_flow
from .format import flow_command
from .report import EXIT_FAILED, EXIT_USAGE, Report


@click.command("resume")
@db_option
@click.argument("run_id")
@click.option("--model", "-m", metavar="MODEL", help="Run-level model for the steps that still run.")
@click.option("--max-cost", type=float, callback=finite_usd, metavar="USD", help="A new budget in USD.")
@click.option("--max-tokens", type=click.IntRange(min=0), metavar="N", help="A new token budget.")
@click.option("--force", is_flag=True, help="Resume even if the run's heartbeat is still fresh.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON object: run_id, status, outputs, error."
)
@click.option("--traceback", "show_traceback", is_flag=True, help="On failure, also print the traceback.")
@reads_database
def resume(
    run_id: str,
    model: str | None,
    max_cost: float | None,
    max_tokens: int | None,
    force: bool,
    as_json: bool,
    show_traceback: bool,
) -> None:
    """Resume a failed, crashed or cancelled run in place.

    Steps that completed are not run again (their stored outputs are used, no LLM call); the flow goes
    on live from the first step without an output. RUN_ID may be a unique prefix. The run keeps the
    model and budget it was started with; --max-cost / --max-tokens set a new budget instead.

    \b
    Exit codes: 0 completed (or had completed already: nothing runs);
    1 the resumed run failed, was cancelled or stopped by its budget;
    2 no such run, a child run (resume its root), still running, an
    unknown --model, or its flow's code cannot be found.
    """
    from flow_engine.engine import get_engine
    from flow_engine.resume import flow_class_for, is_stale
    from flow_engine.storage import RunStatus

    report = Report(as_json)
    try:
        run = get_engine().store.load_run(run_id)
        report.flow_name = run.flow_name
        if run.parent_run_id is not None:
            raise UsageError(f"run {run.id} is a child of run {run.parent_run_id}; resume that run instead")
        check_model(model, get_engine())  # before the run is claimed
        if run.status == RunStatus.COMPLETED:
            click.echo(f"Run {run.id} already completed; nothing to resume.", err=True)
            report.finished(run, run.id, run.outputs, run.status, None)
            return
        if run.status == RunStatus.RUNNING and not force and not is_stale(run):
            raise UsageError(
                f"run {run.id} is still running (last heartbeat {run.last_heartbeat:%H:%M:%S} UTC); "
                "cancel it first (flow cancel), or use --force if its process is gone"
            )
        flow = flow_class_for(run)()
    except UsageError as exc:
        report.refuse(exc, EXIT_USAGE)
    except FlowEngineError as exc:
        report.refuse(exc, EXIT_FAILED)
    click.echo(f"Resuming run {run.id} ({run.flow_name}, was {run.status}).", err=True)
    run_flow(
        flow,
        lambda: flow.resume(run, model=model, max_cost=max_cost, max_tokens=max_tokens, force=force),
        report,
        show_traceback,
    )


@click.command("cancel")
@db_option
@click.argument("run_id")
@reads_database
def cancel(run_id: str) -> None:
    """Cancel a run: it stops at its next step boundary, recorded as cancelled.

    The process running it finishes its current step (recorded) and starts no other. A run that nobody
    executes (pending, crashed, waiting for input, or whose heartbeat stopped) is cancelled at once.
    RUN_ID may be a unique prefix. A cancelled run can still be resumed (flow resume).

    \b
    Exit codes: 0 cancelled, or cancel requested; 1 the run had already
    ended (nothing to cancel); 2 no such run.
    """
    from flow_engine.resume import cancel as cancel_run

    run, status = asyncio.run(cancel_run(run_id))
    if status == "running":
        click.echo(
            f"Cancel requested for run {run.id}; it stops at its next step boundary "
            f"({flow_command(f'show {run.id.hex[:8]}')} shows when)."
        )
    elif status == "cancelled" and run.status != "cancelled":
        click.echo(f"Run {run.id} cancelled.")
    else:
        click.echo(f"Run {run.id} already {status}; nothing to cancel.", err=True)
        sys.exit(1)


@click.command("recover")
@db_option
@click.option(
    "--stale-after",
    type=click.FloatRange(min=0, min_open=True),
    callback=finite_seconds,
    metavar="SECONDS",
    help="Heartbeat age that counts as dead (default FLOW_ENGINE_STALE_AFTER); must exceed twice "
    "FLOW_ENGINE_HEARTBEAT_INTERVAL.",
)
@reads_database
def recover(stale_after: float | None) -> None:
    """Mark running runs whose heartbeat stopped as crashed, so they can be resumed.

    A run counts as dead when its heartbeat is older than --stale-after seconds (default
    FLOW_ENGINE_STALE_AFTER); a run that finished is never marked. A run waiting for input whose
    deadline passed is marked failed. Prints one line per run marked.
    """
    from flow_engine.respond import expire_waits
    from flow_engine.resume import check_stale_after
    from flow_engine.resume import recover as recover_runs

    try:
        check_stale_after(stale_after)
    except UsageError as exc:
        raise click.UsageError(str(exc)) from None
    ids = asyncio.run(recover_runs(stale_after))
    for run_id in ids:
        click.echo(
            f"{run_id} crashed (no heartbeat); resume it with: {flow_command(f'resume {str(run_id)[:8]}')}"
        )
    expired = asyncio.run(expire_waits())
    for run_id in expired:
        click.echo(f"{run_id} failed (no answer before the deadline of its wait_for_input)")
    if not ids and not expired:
        click.echo("No stale runs.", err=True)
