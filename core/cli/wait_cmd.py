"""``flow wait``: wait for a run's end, then report it exactly like ``flow run``.

``flow wait RUN_ID`` polls the database until the run ends: outputs on stdout, a summary on stderr,
exit 0 when it completed and 1 otherwise (a timeout included). It need not be the process that
executes the run (typically one submitted with ``flow run --background``).
"""

from __future__ import annotations

import sys
import time

import click

from flow_engine.cli.options import db_option, finite_seconds, reads_database
from flow_engine.errors import UsageError

from .progress import WaitProgress
from .report import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, Report


@click.command("wait")
@db_option
@click.argument("run_id")
@click.option(
    "--timeout",
    type=float,
    callback=finite_seconds,
    metavar="SECONDS",
    help="Give up after this long (exit 1; the run goes on); a finite number >= 0.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (as flow run --json does).")
@reads_database
def wait(run_id: str, timeout: float | None, as_json: bool) -> None:
    """Wait until a run ends, then print its result like `flow run` does.

    Works for any run, typically one submitted with `flow run --background`; RUN_ID may be a unique
    prefix. Progress goes to stderr when it is a terminal.

    \b
    Exit codes: 0 completed; 1 failed, cancelled, crashed, or still
    running at --timeout; 2 no such run, or a --timeout that is not a
    finite number >= 0.
    """
    from flow_engine.engine import get_engine
    from flow_engine.resume import display_status
    from flow_engine.submit import RunPoller

    report = Report(as_json)
    try:
        run = get_engine().store.load_run(run_id)
    except UsageError as exc:
        report.refuse(exc, EXIT_USAGE)
    report.flow_name = run.flow_name
    poll = RunPoller(run.id, timeout)
    progress = WaitProgress(run)
    try:
        while True:
            run, sleep = poll.check()
            if sleep is None:
                break
            progress.show(run)
            time.sleep(sleep)
    except TimeoutError as exc:
        status = display_status(run)
        click.echo(f"Error: {exc}; stopped waiting (flow wait {str(run.id)[:8]} again later)", err=True)
        report.finished(run, run.id, None, status, str(exc))
        sys.exit(EXIT_FAILED)
    except KeyboardInterrupt:
        click.echo(f"Stopped waiting; run {run.id} goes on (flow wait {str(run.id)[:8]}).", err=True)
        sys.exit(EXIT_INTERRUPTED)
    status = display_status(run)
    if status == "completed":
        report.finished(run, run.id, run.outputs, status, None)
        sys.exit(EXIT_OK)
    error = run.error_message or status
    click.echo(f"Error: flow '{run.flow_name}' {status}: {error}", err=True)
    report.finished(run, run.id, None, status, error)
    sys.exit(EXIT_FAILED)
