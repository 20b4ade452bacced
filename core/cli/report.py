"""Exit codes and the report of a run's end, shared by ``flow run``, ``flow resume`` and ``flow wait``.

stdout carries only the outputs (or, under ``--json``, one JSON object); the summary line, the hints
and errors go to stderr.
"""

from __future__ import annotations

import json
import sys
import uuid
from typing import TYPE_CHECKING, Any, NoReturn

import click

from flow_engine.errors import FlowEngineError

from .format import echo_json_line, flow_command, fmt_cost, json_cost, resume_advice

if TYPE_CHECKING:  # pragma: no cover
    from flow_engine.storage import RunRecord

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143
EXIT_WAITING = 3  # the run stopped at wait_for_input: answer it with `flow respond`


class Report:
    """Writes the result: outputs or one JSON object on stdout, everything else on stderr."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.flow_name: str | None = None
        self.fix_first = False  # the run failed on a usage error (exit 2): resuming alone cannot help

    def json(self, payload: dict[str, Any]) -> None:
        echo_json_line(payload)

    def refuse(self, exc: FlowEngineError, code: int = EXIT_USAGE) -> NoReturn:
        """A problem found before any run was written: status "invalid" (usage) or "error"."""
        if self.as_json:
            self.json(
                {
                    "run_id": None,
                    "flow": self.flow_name,
                    "status": "invalid" if code == EXIT_USAGE else "error",
                    "outputs": None,
                    "error": str(exc),
                }
            )
        click.echo(f"Error: {exc}", err=True)
        sys.exit(code)

    def waiting(self, record: Any, run_id: uuid.UUID, wait: Any) -> NoReturn:
        """The run waits for a person (``RunWaiting``): say how to answer, exit ``EXIT_WAITING``."""
        fields = list((wait.schema or {}).get("properties") or {})
        example = " ".join(f"--input {name}=..." for name in fields) or "--inputs-file answer.json"
        prompt = f" ({wait.prompt})" if wait.prompt else ""
        click.echo(f"Waiting: run {run_id} waits for input '{wait.name}'{prompt}.", err=True)
        click.echo(f"Answer with: {flow_command(f'respond {run_id} {wait.name} {example}')}", err=True)
        self.finished(record, run_id, None, "waiting", None)
        sys.exit(EXIT_WAITING)

    def finished(self, record: Any, run_id: uuid.UUID, outputs: Any, status: str, error: str | None) -> None:
        from flow_engine.jsonable import to_jsonable

        payload: dict[str, Any] = {
            "run_id": str(run_id),
            "flow": self.flow_name,
            "status": status,
            "outputs": to_jsonable(outputs) if outputs is not None else None,
            "error": error,
        }
        if record is not None:
            payload["total_tokens"] = record.total_tokens
            payload.update(json_cost(record.total_cost, record.unpriced_calls))
            payload["execution_time_ms"] = record.execution_time_ms
        if self.as_json:
            self.json(payload)
        elif outputs is not None:
            print_outputs(payload["outputs"])
        self._footer(payload, run_id)

    def _footer(self, payload: dict[str, Any], run_id: uuid.UUID) -> None:
        parts = [f"Run {run_id} {payload['status']}"]
        if payload.get("execution_time_ms") is not None:
            parts[0] += f" in {payload['execution_time_ms'] / 1000:.2f}s"
        if payload.get("total_tokens"):
            parts.append(f"{payload['total_tokens']} tokens")
            if payload.get("unpriced_calls"):
                parts.append(f"cost unknown ({payload['unpriced_calls']} unpriced call(s))")
            elif payload.get("total_cost") is not None:
                parts.append(fmt_cost(payload["total_cost"]))  # a tiny cost is not shown as $0.0000
        click.echo(" · ".join(parts), err=True)
        click.echo(f"See it again with: {flow_command(f'show {run_id}')}", err=True)
        if payload["status"] in ("failed", "cancelled", "crashed") and self.fix_first:
            click.echo(
                f"Fix the cause above first (the flow's code or its files); resuming as it is fails the "
                f"same way. Then: {flow_command(f'resume {run_id}')} (its completed steps are not run again)",
                err=True,
            )
        elif payload["status"] in ("failed", "cancelled", "crashed"):
            click.echo(resume_advice(flow_command(f"resume {run_id}"), payload.get("error")), err=True)


def print_outputs(outputs: Any) -> None:
    """Pretty JSON; coloured on a terminal (rich), plain and valid JSON when piped."""
    text = json.dumps(outputs, indent=2, ensure_ascii=False, default=str)
    stream = sys.stdout
    if stream.isatty():
        from rich.console import Console

        Console().print_json(text)
    else:
        click.echo(text)


def stored_run(run_id: uuid.UUID | None) -> RunRecord | None:
    """The run as stored, for the report; None when there is none or it cannot be read (reporting must
    not hide the original problem)."""
    from flow_engine.engine import get_engine

    if run_id is None:
        return None
    try:
        return get_engine().store.get_run(run_id)
    except Exception:
        return None
