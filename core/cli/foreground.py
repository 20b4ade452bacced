"""A run in this process, on the command line: live progress, then the report and the exit code.

Shared by ``flow run`` (a new run) and ``flow resume`` (an old one). A failure after the run row
exists is recorded on it and ends in exit 1 (2 if the failure is itself a usage error, such as a
missing prompt template); Ctrl-C records the run as cancelled and exits 130, and so does SIGTERM (what
containers and process managers send to stop a program) with exit 143: the run's task is cancelled, so
the step in flight and the run are recorded as cancelled at once instead of waiting for a stale heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
import traceback
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, NoReturn

import click

from flow_engine.errors import FlowEngineError, RunWaiting, UsageError

from .progress import ProgressReporter, err_console
from .report import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_USAGE, Report, stored_run

if TYPE_CHECKING:  # pragma: no cover
    from flow_engine.flows import BaseFlow


def run_flow(
    flow: BaseFlow,
    start: Callable[[], Coroutine[Any, Any, dict[str, Any]]],
    report: Report,
    show_traceback: bool,
) -> None:
    """Run ``start()`` (an execute or a resume of ``flow``) with live progress, then report and exit."""
    from flow_engine.engine import get_engine
    from flow_engine.jsonable import describe_error

    engine = get_engine()
    progress = ProgressReporter(None if report.as_json else err_console())
    plugin_name = engine.plugins.register(progress, name=f"flow-cli-progress-{id(progress)}")
    report.flow_name = report.flow_name or flow.flow_name
    # under --json, stray print() calls of the flow must not corrupt the one JSON object on stdout
    quiet_stdout = contextlib.redirect_stdout(sys.stderr) if report.as_json else contextlib.nullcontext()
    started = time.perf_counter()
    terminated = _Terminated()
    try:
        with quiet_stdout:
            outputs = asyncio.run(terminated.cancels(start))
    except KeyboardInterrupt:
        _interrupted(flow, report, "interrupted (Ctrl-C)", EXIT_INTERRUPTED)
    except RunWaiting as wait:  # stopped at wait_for_input: recorded waiting, answered later
        assert flow.run_id is not None
        report.waiting(stored_run(flow.run_id), flow.run_id, wait)
    except asyncio.CancelledError:
        if not terminated.received:
            raise
        _interrupted(flow, report, "terminated (SIGTERM)", EXIT_TERMINATED)
    except Exception as exc:
        if show_traceback:
            traceback.print_exc()
        code = EXIT_USAGE if isinstance(exc, UsageError) else EXIT_FAILED
        if stored_run(flow.run_id) is None:  # failed before the run row existed
            known = exc if isinstance(exc, FlowEngineError) else FlowEngineError(describe_error(exc))
            report.refuse(known, code)
        error = describe_error(exc)
        _failed(flow, report, progress.failed_step, error, code, error in progress.printed_errors)
    finally:
        engine.plugins.unregister(plugin_name)
    assert flow.run_id is not None
    record = stored_run(flow.run_id)
    if record is not None and record.execution_time_ms is None:
        record = record.model_copy(update={"execution_time_ms": int((time.perf_counter() - started) * 1000)})
    report.finished(record, flow.run_id, outputs, "completed", None)


def _failed(
    flow: BaseFlow, report: Report, failed_step: str | None, error: str, code: int, shown: bool = False
) -> NoReturn:
    """``shown``: the step's ✗ line printed this very error whole already; it is not printed twice."""
    assert flow.run_id is not None
    record = stored_run(flow.run_id)
    status = record.status if record is not None else "failed"  # "cancelled" after `flow cancel`
    where = f" at step '{failed_step}'" if failed_step else ""
    report.fix_first = code == EXIT_USAGE
    what = " (the error is above)" if shown and failed_step else f": {error}"
    click.echo(f"Error: flow '{flow.flow_name}' {status}{where}{what}", err=True)
    report.finished(record, flow.run_id, None, status, error)
    sys.exit(code)


class _Terminated:
    """SIGTERM cancels the run's task, as Ctrl-C does (asyncio turns SIGINT into a cancellation)."""

    received = False

    async def cancels(self, start: Callable[[], Coroutine[Any, Any, dict[str, Any]]]) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        def on_sigterm() -> None:
            if not self.received:
                self.received = True
                task.cancel("terminated (SIGTERM)")

        try:
            loop.add_signal_handler(signal.SIGTERM, on_sigterm)
        except (NotImplementedError, RuntimeError, ValueError):  # Windows, or not the main thread
            return await start()
        try:
            return await start()
        finally:
            loop.remove_signal_handler(signal.SIGTERM)


def _interrupted(flow: BaseFlow, report: Report, why: str, code: int) -> NoReturn:
    if (record := stored_run(flow.run_id)) is None:  # before the run started
        report.refuse(FlowEngineError(f"{why} before the run started"), code)
    click.echo(f"Interrupted: flow '{flow.flow_name}' stopped; run recorded as {record.status}.", err=True)
    assert flow.run_id is not None
    report.finished(record, flow.run_id, None, record.status, why)
    sys.exit(code)
