"""Runs executed elsewhere: which executor ``--background`` and ``flow worker`` use, and the submission.

``flow run NAME --background`` checks everything ``flow run`` checks (flow, inputs, database) before
writing, submits the run and prints its id at once (stdout: the id, or one JSON object under
``--json``); ``flow wait`` follows it.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING, Any, NoReturn

import click

from flow_engine.errors import FlowEngineError, UsageError

from .format import flow_command
from .report import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Report, stored_run

if TYPE_CHECKING:  # pragma: no cover
    from flow_engine.flows import BaseFlow


def background_executor(name: str | None) -> str:
    """The executor of ``--background``: ``--executor``, else FLOW_ENGINE_EXECUTOR unless it runs in
    this process (``local``, the default), else the plugins' default background executor."""
    from flow_engine.engine import get_engine
    from flow_engine.executors import executor_info

    if name is None:
        engine = get_engine()
        configured = engine.settings.executor or engine.plugins.default_executor()
        if configured is None:
            raise UsageError("no executor is registered (see `flow plugins`)")
        name = configured
        if executor_info(configured).in_process:
            name = engine.plugins.default_background_executor() or configured
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
    report: Report,
) -> NoReturn:
    """Submit the run, print its id and exit 0; or say why it could not be submitted and exit 2/1."""
    flow = flow_cls()
    try:
        name = background_executor(executor)
        run_id = asyncio.run(flow.submit(inputs, executor=name, model=model, **budget))
    except UsageError as exc:
        report.refuse(exc, EXIT_USAGE)
    except FlowEngineError as exc:
        record = stored_run(flow.run_id)
        if record is None:  # nothing was written
            report.refuse(exc, EXIT_FAILED)
        click.echo(f"Error: {exc}", err=True)
        report.finished(record, record.id, None, record.status, record.error_message or str(exc))
        sys.exit(EXIT_FAILED)
    if report.as_json:
        report.json({"run_id": str(run_id), "flow": report.flow_name, "status": "pending", "executor": name})
    else:
        click.echo(str(run_id))
    click.echo(
        f"Submitted run {run_id} ({report.flow_name}) to executor '{name}'. "
        f"Follow it with: {flow_command(f'wait {run_id}')}  (or {flow_command(f'show {str(run_id)[:8]}')})",
        err=True,
    )
    sys.exit(EXIT_OK)
