"""Live progress on stderr: step lines of a run in this process, state changes of a run elsewhere.

:class:`ProgressReporter` is an in-code plugin (lifecycle hooks) for ``flow run`` / ``flow resume``;
:class:`WaitProgress` turns the polls of ``flow wait`` into lines. Neither writes to stdout.
"""

from __future__ import annotations

import sys
import time
import uuid
from typing import TYPE_CHECKING, Any

import click

from flow_engine.hookspecs import hookimpl

if TYPE_CHECKING:  # pragma: no cover
    from flow_engine.runtime_info import FlowEvent, StepEvent
    from flow_engine.storage import RunRecord

PENDING_HINT_AFTER = 10.0  # seconds before `flow wait` says nobody seems to take the run
WAITING_AFTER, WAITING_EVERY = 10.0, 30.0  # seconds before/between "still waiting for the model" lines


def err_console() -> Any | None:
    """A rich console on stderr when it is a terminal; plain lines otherwise (logs, pipes, tests)."""
    stream = sys.stderr
    if not stream.isatty():
        return None
    from rich.console import Console

    return Console(stderr=True)


class ProgressReporter:
    """Prints one line when a step starts and one when it ends, on stderr.

    Registered with the engine's plugin manager for the duration of one ``flow run``. Steps of child
    flows are indented under the child flow's name. On a terminal the lines are coloured (rich);
    elsewhere they are plain text.
    """

    def __init__(self, err_console: Any | None) -> None:
        self._console = err_console
        self._depth: dict[uuid.UUID, int] = {}
        self.top_run_id: uuid.UUID | None = None
        self.failed_step: str | None = None
        self.printed_errors: set[str] = set()  # printed whole on a ✗ line: the final report refers to it
        self.waiting_after = WAITING_AFTER
        self.waiting_every = WAITING_EVERY

    def _echo(self, text: str, style: str | None = None) -> None:
        if self._console is not None:
            self._console.print(text, style=style, markup=False, highlight=False, soft_wrap=True)
        else:
            click.echo(text, err=True)

    def _indent(self, run_id: uuid.UUID | None) -> str:
        return "  " * self._depth.get(run_id, 0) if run_id is not None else ""

    @staticmethod
    def _position(event: StepEvent) -> str:
        if event.step_order is None:
            return ""
        return f" [{event.step_order}/{event.total_steps}]" if event.total_steps else f" [{event.step_order}]"

    @hookimpl
    def before_flow(self, event: FlowEvent) -> None:
        if event.parent_run_id is None or event.parent_run_id not in self._depth:
            self._depth[event.run_id] = 0
            self.top_run_id = self.top_run_id or event.run_id
            return
        depth = self._depth[event.parent_run_id] + 1
        self._depth[event.run_id] = depth
        self._echo(f"{'  ' * (depth - 1)}↳ flow {event.flow_name}", "cyan")

    @hookimpl
    def before_step(self, event: StepEvent) -> None:
        label = event.step_key or event.step_name
        self._echo(f"{self._indent(event.run_id)}→ {label} ({event.step_type}){self._position(event)}", "dim")

    @hookimpl
    def after_step(self, event: StepEvent) -> None:
        label = event.step_key or event.step_name
        if getattr(event, "replayed", False):  # resumed: its stored output is used, nothing ran
            self._echo(f"{self._indent(event.run_id)}↺ {label} · replayed (stored output)", "dim")
            return
        meta = getattr(event.result, "metadata", None) or {}
        details = [f"{(meta.get('execution_time_ms') or 0) / 1000:.2f}s"]
        if meta.get("llm_calls"):
            details.append(f"{meta.get('tokens_used', 0)} tokens")
            if meta.get("model"):
                details.append(str(meta["model"]))
        self._echo(f"{self._indent(event.run_id)}✓ {label} · {' · '.join(details)}", "green")

    @hookimpl
    def on_step_error(self, event: StepEvent) -> None:
        from flow_engine.jsonable import describe_error

        label = event.step_key or event.step_name
        if self.failed_step is None and event.run_id == self.top_run_id:
            self.failed_step = label
        error = describe_error(event.error) if event.error is not None else "failed"
        indent = self._indent(event.run_id)
        self.printed_errors.add(error)
        whole = error.replace("\n", "\n" + indent + "  ")  # once and whole, continuation lines indented
        self._echo(f"{indent}✗ {label} failed: {whole}", "red")

    @hookimpl(wrapper=True)
    def wrap_llm_call(self, call: Any) -> Any:
        """Say that a model call is still waiting, with its elapsed time, while it waits."""
        send = yield

        async def waiting_send() -> Any:
            import asyncio

            ticker = asyncio.ensure_future(self._tick(call, time.monotonic()))
            try:
                return await send()
            finally:
                ticker.cancel()

        return waiting_send

    async def _tick(self, call: Any, started: float) -> None:
        import asyncio

        from flow_engine.engine import get_engine

        timeout = get_engine().settings.request_timeout
        await asyncio.sleep(self.waiting_after)
        while True:
            elapsed = time.monotonic() - started
            attempt = f", attempt {call.attempt}" if call.attempt > 1 else ""
            if getattr(call, "queued_for", None):
                who = call.step or call.kind
                self._echo(f"  … {who} waiting for the rate limit {call.queued_for} · {elapsed:.0f}s", "dim")
                await asyncio.sleep(self.waiting_every)
                continue
            self._echo(
                f"  … {call.step or call.kind} waiting for {call.model} · {elapsed:.0f}s "
                f"(timeout {timeout:g}s{attempt})",
                "dim",
            )
            await asyncio.sleep(self.waiting_every)


class WaitProgress:
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
