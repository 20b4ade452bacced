"""``flow run``: resolve a flow, gather and validate its inputs, run it with live progress, report.

Everything that can be wrong with the request (unknown flow, unreadable file, invalid inputs,
conflicting plugins, unknown storage URL) is found before the run row is written, and ends in exit 2
with one readable message. Once the run exists, a failure is recorded on it and the command exits 1
(2 if the failure is itself a usage error, such as a missing prompt template); Ctrl-C records the run
as cancelled and exits 130. stdout carries only the outputs (or, under ``--json``, one JSON object);
progress, notices and errors go to stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import sys
import time
import traceback
import types
import typing
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from flow_engine.errors import FlowEngineError, InputValidationError, UsageError
from flow_engine.hookspecs import hookimpl

if TYPE_CHECKING:  # pragma: no cover
    from flow_engine.flows import BaseFlow
    from flow_engine.runtime_info import FlowEvent, StepEvent

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


# -- inputs -------------------------------------------------------------------------------------
class _Stdin:
    """stdin may feed one thing only (``--inputs-file -`` or one ``KEY=@-``)."""

    def __init__(self) -> None:
        self.used_by: str | None = None

    def read(self, who: str) -> str:
        if self.used_by is not None:
            raise UsageError(f"{who} wants to read stdin, but {self.used_by} already reads it")
        self.used_by = who
        return sys.stdin.read()


def _read_text(name: str, who: str, stdin: _Stdin) -> str:
    if name == "-":
        return stdin.read(who)
    if not name:
        raise UsageError(f"{who}: no file name after '@'")
    path = Path(name).expanduser()
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{who}: no such file '{name}'") from None
    except IsADirectoryError:
        raise UsageError(f"{who}: '{name}' is a folder, not a file") from None
    except UnicodeDecodeError:
        raise UsageError(f"{who}: '{name}' is not UTF-8 text") from None
    except OSError as exc:
        raise UsageError(f"{who}: cannot read '{name}': {exc.strerror or exc}") from None


def _read_inputs_file(name: str, stdin: _Stdin) -> dict[str, Any]:
    who = f"--inputs-file {name}"
    text = _read_text(name, who, stdin)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        source = "stdin" if name == "-" else f"'{name}'"
        where = f"line {exc.lineno}, column {exc.colno}"
        raise UsageError(f"{who}: {source} is not valid JSON: {exc.msg} ({where})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{who}: expected a JSON object of inputs, got {type(data).__name__}")
    return data


def _wants_text(annotation: Any) -> bool:
    """True when the field takes the text as it is (``str``, ``str | None``, str enums, paths)."""
    if annotation is str:
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _wants_text(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        return bool(members) and all(_wants_text(a) for a in members)
    if origin is typing.Literal:
        return all(isinstance(a, str) for a in typing.get_args(annotation))
    return inspect.isclass(annotation) and issubclass(annotation, str | os.PathLike)


def _field_annotations(flow_cls: type[BaseFlow]) -> dict[str, Any] | None:
    """Input name (and alias) -> annotation; None when the flow declares no ``Inputs``."""
    model = flow_cls.Inputs
    if model is None:
        return None
    names: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        names[name] = field.annotation
        if field.alias:
            names[field.alias] = field.annotation
    return names


def _coerce(value: str, annotation: Any, known: bool) -> Any:
    """Text for text fields; for any other field, the JSON value when the text parses as JSON."""
    if not known or _wants_text(annotation):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def collect_inputs(
    flow_cls: type[BaseFlow], pairs: tuple[str, ...], inputs_file: str | None, stdin: _Stdin
) -> dict[str, Any]:
    """The JSON file's inputs, overridden by ``--input`` pairs; unknown names are refused."""
    data: dict[str, Any] = _read_inputs_file(inputs_file, stdin) if inputs_file else {}
    annotations = _field_annotations(flow_cls)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--input '{pair}': expected KEY=VALUE (or KEY=@FILE to read a file)")
        if value.startswith("@@"):  # a literal value starting with '@'
            value = value[1:]
        elif value.startswith("@"):
            value = _read_text(value[1:], f"--input {key}", stdin)
        known = annotations is not None and key in annotations
        data[key] = _coerce(value, annotations.get(key) if annotations else None, known)
    _refuse_unknown(flow_cls, data, annotations)
    return data


def _refuse_unknown(
    flow_cls: type[BaseFlow], data: dict[str, Any], annotations: dict[str, Any] | None
) -> None:
    """A misspelt input name would otherwise be dropped silently and its default used."""
    import difflib

    if annotations is None or flow_cls.Inputs is None or flow_cls.Inputs.model_config.get("extra") == "allow":
        return
    unknown = [key for key in data if key not in annotations]
    if not unknown:
        return
    lines = [f"flow '{flow_cls.flow_name}' has no input named {', '.join(repr(k) for k in unknown)}."]
    for key in unknown:
        close = difflib.get_close_matches(key, list(annotations), n=1)
        if close:
            lines.append(f"Did you mean '{close[0]}' instead of '{key}'?")
    lines.append(f"Its inputs: {', '.join(flow_cls.Inputs.model_fields) or 'none'} (see `flow list`).")
    raise UsageError("\n".join(lines))


# -- live progress ------------------------------------------------------------------------------
class ProgressReporter:
    """An in-code plugin: prints one line when a step starts and one when it ends, on stderr.

    Registered with the engine's plugin manager for the duration of one ``flow run``. Steps of child
    flows are indented under the child flow's name. On a terminal the lines are coloured (rich);
    elsewhere they are plain text.
    """

    def __init__(self, err_console: Any | None) -> None:
        self._console = err_console
        self._depth: dict[uuid.UUID, int] = {}
        self.top_run_id: uuid.UUID | None = None
        self.failed_step: str | None = None

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
        first_line = error.splitlines()[0] if error else "failed"
        self._echo(f"{self._indent(event.run_id)}✗ {label} failed: {first_line}", "red")


# -- reporting ----------------------------------------------------------------------------------
class _Report:
    """Writes the result: outputs or one JSON object on stdout, everything else on stderr."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.flow_name: str | None = None

    def _json(self, payload: dict[str, Any]) -> None:
        click.echo(json.dumps(payload, ensure_ascii=False, default=str))

    def refuse(self, exc: FlowEngineError, code: int = EXIT_USAGE) -> NoReturn:
        """A problem found before any run was written: status "invalid" (usage) or "error"."""
        if self.as_json:
            self._json(
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
            cost = None if record.unpriced_calls else record.total_cost
            payload.update(
                total_tokens=record.total_tokens,
                total_cost=cost,
                unpriced_calls=record.unpriced_calls,
                execution_time_ms=record.execution_time_ms,
            )
        if self.as_json:
            self._json(payload)
        elif outputs is not None:
            _print_outputs(payload["outputs"])
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
                from .history_cmd import fmt_cost  # a tiny cost is not shown as $0.0000

                parts.append(fmt_cost(payload["total_cost"]))
        click.echo(" · ".join(parts), err=True)
        click.echo(f"See it again with: flow show {run_id}", err=True)
        if payload["status"] in ("failed", "cancelled", "crashed"):
            click.echo(
                f"Resume it with: flow resume {run_id} (its completed steps are not run again)", err=True
            )


def _print_outputs(outputs: Any) -> None:
    """Pretty JSON; coloured on a terminal (rich), plain and valid JSON when piped."""
    text = json.dumps(outputs, indent=2, ensure_ascii=False, default=str)
    stream = sys.stdout
    if stream.isatty():
        from rich.console import Console

        Console().print_json(text)
    else:
        click.echo(text)


def _err_console() -> Any | None:
    """A rich console on stderr when it is a terminal; plain lines otherwise (logs, pipes, tests)."""
    stream = sys.stderr
    if not stream.isatty():
        return None
    from rich.console import Console

    return Console(stderr=True)


# -- the command --------------------------------------------------------------------------------
@click.command("run")
@click.argument("target", metavar="FLOW")
@click.option(
    "--input",
    "-i",
    "pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="An input; repeatable. KEY=@FILE reads the file's text (@- reads stdin, @@ a literal '@'). "
    'Non-text inputs take JSON: count=3, tags=\'["a","b"]\'.',
)
@click.option(
    "--inputs-file",
    metavar="FILE|-",
    help="A JSON object of inputs ('-' reads stdin); --input pairs override its keys.",
)
@click.option("--model", "-m", metavar="MODEL", help="Run-level model: any litellm model string.")
@click.option(
    "--max-cost",
    type=click.FloatRange(min=0),
    metavar="USD",
    help="Budget: stop before the next step once the run has spent this much.",
)
@click.option(
    "--max-tokens",
    type=click.IntRange(min=0),
    metavar="N",
    help="Budget: stop before the next step once the run has used this many tokens.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON object: run_id, status, outputs, error."
)
@click.option("--traceback", "show_traceback", is_flag=True, help="On failure, also print the traceback.")
@click.option(
    "--record",
    "record_to",
    metavar="CASSETTE",
    help="Save every LLM response of the run to this JSON file, to replay it later (no keys are saved).",
)
@click.option(
    "--replay",
    "replay_from",
    metavar="CASSETTE",
    help="Answer every LLM request from this file (made by --record): no network, no key; "
    "a request it does not hold fails the run (exit 2).",
)
@click.option(
    "--background", is_flag=True, help="Submit the run to workers and print its id at once (see `flow wait`)."
)
@click.option("--executor", metavar="NAME", help="With --background: the executor (default celery).")
def run(
    target: str,
    pairs: tuple[str, ...],
    inputs_file: str | None,
    model: str | None,
    max_cost: float | None,
    max_tokens: int | None,
    as_json: bool,
    show_traceback: bool,
    record_to: str | None,
    replay_from: str | None,
    background: bool,
    executor: str | None,
) -> None:
    """Run FLOW and print its outputs.

    FLOW is a registered flow name (see `flow list`), module:Class, or path/to/file.py:Class.

    \b
    Exit codes: 0 completed; 1 the flow failed (run recorded as failed);
    2 usage error: unknown flow, invalid inputs (nothing recorded),
    missing prompt, conflicting plugins; 130 interrupted (run cancelled).
    """
    report = _Report(as_json)
    try:
        flow_cls, inputs = _prepare(target, pairs, inputs_file, report)
    except UsageError as exc:
        report.refuse(exc, EXIT_USAGE)
    except FlowEngineError as exc:
        report.refuse(exc, EXIT_FAILED)
    tape = _open_cassette(record_to, replay_from, background, report)
    budget = {"max_cost": max_cost, "max_tokens": max_tokens}
    if background or executor:
        if not background:
            report.refuse(UsageError("--executor goes with --background"), EXIT_USAGE)
        from .wait_cmd import submit_in_background

        submit_in_background(flow_cls, inputs, model, budget, executor, report)
    with _using_cassette(tape):
        _execute(flow_cls, inputs, model, budget, report, show_traceback)


def _prepare(
    target: str, pairs: tuple[str, ...], inputs_file: str | None, report: _Report
) -> tuple[type[BaseFlow], dict[str, Any]]:
    """Everything checked before a run row exists: the flow, its inputs, plugins and storage."""
    from flow_engine.engine import get_engine
    from flow_engine.flow_registry import resolve_flow

    flow_cls = resolve_flow(target)
    report.flow_name = flow_cls.flow_name
    inputs = collect_inputs(flow_cls, pairs, inputs_file, _Stdin())
    try:
        flow_cls.validate_inputs(inputs)
    except InputValidationError as exc:
        raise UsageError(f"{exc}\n(`flow list` shows the inputs of every flow)") from None
    engine = get_engine()
    engine.plugins.step_types()  # two plugins claiming one step type: refuse now, not mid-run
    try:  # an unknown URL scheme or an unreachable database: refuse before writing anything
        engine.store  # noqa: B018
    except FlowEngineError:
        raise
    except Exception as exc:  # a driver's own error (sqlite path, connection refused...)
        from flow_engine.jsonable import describe_error
        from flow_engine.llm.redact import redact_text, redact_url

        url = redact_url(engine.database_url)  # never print a password
        raise FlowEngineError(f"cannot open the database {url}: {redact_text(describe_error(exc))}") from exc
    return flow_cls, inputs


def _open_cassette(record_to: str | None, replay_from: str | None, background: bool, report: _Report) -> Any:
    """The cassette of ``--record`` / ``--replay``, opened (a replayed file read) before any run exists."""
    if record_to is None and replay_from is None:
        return None
    from flow_engine.llm.cassette import Cassette

    if record_to is not None and replay_from is not None:
        report.refuse(UsageError("--record and --replay do not go together"), EXIT_USAGE)
    if background:
        report.refuse(UsageError("--record/--replay need the run in this process, not --background"))
    try:
        if replay_from is not None:
            return Cassette(replay_from, "replay")
        return Cassette(str(record_to), "record")
    except UsageError as exc:
        report.refuse(exc, EXIT_USAGE)


@contextlib.contextmanager
def _using_cassette(tape: Any) -> Any:
    """Record to / replay from ``tape`` around the run; say on stderr what it did, however the run ends."""
    if tape is None:
        yield
        return
    from flow_engine.llm.hook import call_plugins

    try:
        with call_plugins(tape):
            yield
    finally:
        if tape.replaying:
            used, held = len(tape.interactions) - len(tape.unplayed), len(tape.interactions)
            click.echo(f"Replayed {used} of {held} LLM response(s) from {tape.path}", err=True)
        else:
            tape.save()  # also when nothing was recorded: the file says so
            click.echo(f"Recorded {len(tape.interactions)} LLM response(s) to {tape.path}", err=True)


def _execute(
    flow_cls: type[BaseFlow],
    inputs: dict[str, Any],
    model: str | None,
    budget: dict[str, Any],
    report: _Report,
    show_traceback: bool,
) -> None:
    flow = flow_cls()
    run_flow(flow, lambda: flow.execute(inputs, model=model, **budget), report, show_traceback)


def run_flow(
    flow: BaseFlow,
    start: Callable[[], Coroutine[Any, Any, dict[str, Any]]],
    report: _Report,
    show_traceback: bool,
) -> None:
    """Run ``start()`` (an execute or a resume of ``flow``) with live progress, then report and exit."""
    from flow_engine.engine import get_engine
    from flow_engine.jsonable import describe_error

    engine = get_engine()
    progress = ProgressReporter(None if report.as_json else _err_console())
    plugin_name = engine.plugins.register(progress, name=f"flow-cli-progress-{id(progress)}")
    report.flow_name = report.flow_name or flow.flow_name
    # under --json, stray print() calls of the flow must not corrupt the one JSON object on stdout
    quiet_stdout = contextlib.redirect_stdout(sys.stderr) if report.as_json else contextlib.nullcontext()
    started = time.perf_counter()
    try:
        with quiet_stdout:
            outputs = asyncio.run(start())
    except KeyboardInterrupt:
        _interrupted(flow, report)
    except Exception as exc:
        if show_traceback:
            traceback.print_exc()
        code = EXIT_USAGE if isinstance(exc, UsageError) else EXIT_FAILED
        if flow.run_id is None or _record(flow.run_id) is None:  # failed before the run row existed
            known = exc if isinstance(exc, FlowEngineError) else FlowEngineError(describe_error(exc))
            report.refuse(known, code)
        _failed(flow, report, progress.failed_step, describe_error(exc), code)
    finally:
        engine.plugins.unregister(plugin_name)
    assert flow.run_id is not None
    record = _record(flow.run_id)
    if record is not None and record.execution_time_ms is None:
        record = record.model_copy(update={"execution_time_ms": int((time.perf_counter() - started) * 1000)})
    report.finished(record, flow.run_id, outputs, "completed", None)


def _record(run_id: uuid.UUID) -> Any:
    from flow_engine.engine import get_engine

    try:
        return get_engine().store.get_run(run_id)
    except Exception:  # reporting must not hide the original problem
        return None


def _failed(flow: BaseFlow, report: _Report, failed_step: str | None, error: str, code: int) -> NoReturn:
    assert flow.run_id is not None
    record = _record(flow.run_id)
    status = record.status if record is not None else "failed"  # "cancelled" after `flow cancel`
    where = f" at step '{failed_step}'" if failed_step else ""
    click.echo(f"Error: flow '{flow.flow_name}' {status}{where}: {error}", err=True)
    report.finished(record, flow.run_id, None, status, error)
    sys.exit(code)


def _interrupted(flow: BaseFlow, report: _Report) -> NoReturn:
    if flow.run_id is None or (record := _record(flow.run_id)) is None:  # before the run started
        report.refuse(FlowEngineError("interrupted before the run started"), EXIT_INTERRUPTED)
    click.echo(f"Interrupted: flow '{flow.flow_name}' stopped; run recorded as {record.status}.", err=True)
    report.finished(record, flow.run_id, None, record.status, "interrupted (Ctrl-C)")
    sys.exit(EXIT_INTERRUPTED)
