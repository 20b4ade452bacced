"""Background runs on the command line: ``flow run --background`` (submit) and ``flow wait`` (its end).

``flow run NAME --background`` checks everything ``flow run`` checks (flow, inputs, database) before
writing, submits the run and prints its id at once (stdout: the id, or one JSON object under
``--json``). ``flow wait RUN_ID`` polls the database until the run ends and reports it exactly like
``flow run``: outputs on stdout, a summary on stderr, exit 0 when it completed and 1 otherwise (a
timeout included). Neither needs to be the process that executes the run.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from typing import TYPE_CHECKING, Any, NoReturn

import click

from flow_engine.cli.options import db_option
from flow_engine.errors import FlowEngineError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    from flow_engine.flows import BaseFlow
    from flow_engine.storage import RunRecord

    from .run_cmd import _Report

PENDING_HINT_AFTER = 10.0  # seconds before `flow wait` says nobody seems to take the run


# -- flow run --background ------------------------------------------------------------------------
def background_executor(name: str | None) -> str:
    """The executor of ``--background``: ``--executor``, else FLOW_ENGINE_EXECUTOR unless it runs in
    this process (``local``, the default), else the plugins' default background executor."""
    from flow_engine.engine import get_engine
    from flow_engine.executors import executor_info

    if name is None:
        configured = get_engine().settings.executor
        name = configured
        if executor_info(configured).in_process:
            name = get_engine().plugins.default_background_executor() or configured
    if executor_info(name).in_process:
        raise UsageError(
            f"executor '{name}' runs a flow inside the process that submits it, and `flow run "
            "--background` exits at once; use --executor NAME of one with workers, or run "
            "it without --background"
        )
    return name


def submit_in_background(
    flow_cls: type[BaseFlow],
    inputs: dict[str, Any],
    model: str | None,
    budget: dict[str, Any],
    executor: str | None,
    report: _Report,
) -> NoReturn:
    """Submit the run, print its id and exit 0; or say why it could not be submitted and exit 2/1."""
    from .run_cmd import EXIT_FAILED, EXIT_OK, EXIT_USAGE

    flow = flow_cls()
    try:
        name = background_executor(executor)
        run_id = asyncio.run(flow.submit(inputs, executor=name, model=model, **budget))
    except UsageError as exc:
        report.refuse(exc, EXIT_USAGE)
    except FlowEngineError as exc:
        record = _record(flow.run_id)
        if record is None:  # nothing was written
            report.refuse(exc, EXIT_FAILED)
        click.echo(f"Error: {exc}", err=True)
        report.finished(record, record.id, None, record.status, record.error_message or str(exc))
        sys.exit(EXIT_FAILED)
    if report.as_json:
        report._json({"run_id": str(run_id), "flow": report.flow_name, "status": "pending", "executor": name})
    else:
        click.echo(str(run_id))
    click.echo(
        f"Submitted run {run_id} ({report.flow_name}) to executor '{name}'. "
        f"Follow it with: flow wait {run_id}  (or flow show {str(run_id)[:8]})",
        err=True,
    )
    sys.exit(EXIT_OK)


def _record(run_id: uuid.UUID | None) -> RunRecord | None:
    from flow_engine.engine import get_engine

    if run_id is None:
        return None
    try:
        return get_engine().store.get_run(run_id)
    except Exception:  # reporting must not hide the original problem
        return None


# -- flow wait ----------------------------------------------------------------------------------
@click.command("wait")
@db_option
@click.argument("run_id")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="Give up after this long (exit 1; the run goes on).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (as flow run --json does).")
def wait(run_id: str, timeout: float | None, as_json: bool) -> None:
    """Wait until a run ends, then print its result like `flow run` does.

    Works for any run, typically one submitted with `flow run --background`; RUN_ID may be a unique
    prefix. Progress goes to stderr when it is a terminal.

    \b
    Exit codes: 0 completed; 1 failed, cancelled, crashed, or still
    running at --timeout; 2 no such run.
    """
    from flow_engine.resume import display_status, load_run
    from flow_engine.submit import RunPoller

    from .run_cmd import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, _Report

    report = _Report(as_json)
    try:
        run = load_run(run_id)
    except UsageError as exc:
        report.refuse(exc, EXIT_USAGE)
    report.flow_name = run.flow_name
    poll = RunPoller(run.id, timeout)
    progress = _Progress(run)
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


class _Progress:
    """One stderr line per change of a run's state while ``flow wait`` waits (on a terminal only), and
    one hint if it stays pending: nobody may be taking runs from its executor."""

    def __init__(self, run: RunRecord) -> None:
        self.started = time.monotonic()
        self.last: tuple[Any, ...] | None = None
        self.hinted = False
        self.tty = sys.stderr.isatty()

    def show(self, run: RunRecord) -> None:
        from flow_engine.resume import display_status

        status = display_status(run)
        if status == "pending" and not self.hinted and time.monotonic() - self.started > PENDING_HINT_AFTER:
            self.hinted = True
            executor = ((run.flow_metadata or {}).get("background") or {}).get("executor")
            where = f" of executor '{executor}'" if executor else ""
            hint = f"Run {run.id} is still pending: is a worker{where} running (`flow worker`)?"
            click.echo(hint, err=True)
        state = (status, run.step_progress, run.current_step)
        if not self.tty or state == self.last:
            return
        self.last = state
        total = f"/{run.total_steps}" if run.total_steps else ""
        step = f" · step {run.step_progress}{total}" + (f" {run.current_step}" if run.current_step else "")
        click.echo(f"  {status}{step if status == 'running' else ''}", err=True)
