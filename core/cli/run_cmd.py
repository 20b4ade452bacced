"""``flow run``: resolve a flow, gather and validate its inputs, run it with live progress, report.

Everything that can be wrong with the request (unknown flow, unreadable file, invalid inputs,
unknown model, unknown storage URL) is found before the run row is written, and ends in exit 2
with one readable message. Once the run exists, a failure is recorded on it and the command exits 1
(2 if the failure is itself a usage error, such as a missing prompt template); Ctrl-C records the run
as cancelled and exits 130 (SIGTERM: 143). stdout carries only the outputs (or, under ``--json``,
one JSON object); progress, notices and errors go to stderr.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import click

from flow_engine.cli.options import db_option, finite_usd
from flow_engine.errors import FlowEngineError, InputValidationError, UsageError

from .background import submit_in_background
from .checks import check_model, check_output_file
from .foreground import run_flow
from .inputs import Stdin, collect_inputs
from .report import EXIT_FAILED, EXIT_USAGE, Report

if TYPE_CHECKING:  # pragma: no cover
    from flow_engine.flows import BaseFlow


# -- the command --------------------------------------------------------------------------------
@click.command("run")
@db_option
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
    type=float,
    callback=finite_usd,
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
    "--max-output-tokens",
    type=click.IntRange(min=0),
    metavar="N",
    help="Limit on each LLM answer's length, in tokens, for steps that set none (0: no limit); "
    "overrides FLOW_ENGINE_MAX_OUTPUT_TOKENS for this run. Not a budget: see --max-tokens.",
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
    "--stream",
    is_flag=True,
    help="Print each LLM step's text on stderr as the model writes it (text steps; structured ones stay "
    "silent).",
)
@click.option(
    "--background", is_flag=True, help="Submit the run to workers and print its id at once (see `flow wait`)."
)
@click.option(
    "--executor",
    metavar="NAME",
    help="With --background: the executor (default FLOW_ENGINE_EXECUTOR if it has workers, else the one "
    "a plugin marks for the background, e.g. celery).",
)
@click.option(
    "--cache/--no-cache",
    default=None,
    help="Answer repeated LLM calls of this run from the response cache (or never); default "
    "FLOW_ENGINE_CACHE. See docs/caching.md.",
)
def run(
    target: str,
    pairs: tuple[str, ...],
    inputs_file: str | None,
    model: str | None,
    max_cost: float | None,
    max_tokens: int | None,
    max_output_tokens: int | None,
    as_json: bool,
    show_traceback: bool,
    record_to: str | None,
    replay_from: str | None,
    stream: bool,
    background: bool,
    executor: str | None,
    cache: bool | None,
) -> None:
    """Run FLOW and print its outputs.

    FLOW is a registered flow name (see `flow list`), module:Class, or path/to/file.py:Class.

    \b
    Exit codes: 0 completed; 1 the flow failed (run recorded as failed);
    2 usage error: unknown flow, invalid inputs (nothing recorded),
    unknown model, missing prompt; 130 interrupted (run cancelled);
    143 terminated by SIGTERM (run cancelled); 3 waiting for input (flow respond).
    """
    report = Report(as_json)
    try:
        flow_cls, inputs = _prepare(target, pairs, inputs_file, report, model)
    except UsageError as exc:
        report.refuse(exc, EXIT_USAGE)
    except FlowEngineError as exc:
        report.refuse(exc, EXIT_FAILED)
    tape = _open_cassette(record_to, replay_from, background, report)
    budget = {"max_cost": max_cost, "max_tokens": max_tokens, "cache": cache}
    if background or executor:
        if not background:
            report.refuse(UsageError("--executor goes with --background"), EXIT_USAGE)
        if stream:
            report.refuse(
                UsageError("--stream shows a run in this process; not with --background"), EXIT_USAGE
            )
        if max_output_tokens is not None:
            report.refuse(
                UsageError(
                    "--max-output-tokens applies to runs in this process; for workers set "
                    "FLOW_ENGINE_MAX_OUTPUT_TOKENS in their environment"
                ),
                EXIT_USAGE,
            )
        submit_in_background(flow_cls, inputs, model, budget, executor, report)
    if max_output_tokens is not None:
        from flow_engine.engine import get_engine

        get_engine().settings.max_output_tokens = max_output_tokens
    from flow_engine.llm.streaming import listening

    with _using_cassette(tape), listening(StreamPrinter() if stream else None):
        _execute(flow_cls, inputs, model, budget, report, show_traceback)


class StreamPrinter:
    """``--stream``: the pieces of text on stderr as they come, the answer's line ended when it is done,
    so the progress lines (also on stderr) stay on lines of their own."""

    def __init__(self) -> None:
        self.open = False

    def __call__(self, piece: str) -> None:
        click.echo(piece, err=True, nl=False)
        self.open = not piece.endswith("\n")

    def done(self) -> None:
        if self.open:
            click.echo("", err=True)
            self.open = False


def _prepare(
    target: str, pairs: tuple[str, ...], inputs_file: str | None, report: Report, model: str | None
) -> tuple[type[BaseFlow], dict[str, Any]]:
    """Everything checked before a run row exists: the flow, its inputs, plugins and storage."""
    from flow_engine.engine import get_engine
    from flow_engine.flow_registry import resolve_flow

    flow_cls = resolve_flow(target)
    report.flow_name = flow_cls.flow_name
    inputs = collect_inputs(flow_cls, pairs, inputs_file, Stdin())
    try:
        flow_cls.validate_inputs(inputs)
    except InputValidationError as exc:
        if ":" in target:  # a module or file flow: `flow list` does not list it
            inputs_of = ", ".join(flow_cls.Inputs.model_fields) if flow_cls.Inputs is not None else "none"
            raise UsageError(f"{exc}\n(flow '{flow_cls.flow_name}' takes: {inputs_of})") from None
        raise UsageError(f"{exc}\n(`flow list` shows the inputs of every flow)") from None
    engine = get_engine()
    check_model(model or flow_cls.model or engine.settings.model, engine)
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


def _open_cassette(record_to: str | None, replay_from: str | None, background: bool, report: Report) -> Any:
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
        # written when the run ends: a folder or a place that takes no file is refused now, not then
        return Cassette(check_output_file(str(record_to), "--record", makes_folders=True), "record")
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
    report: Report,
    show_traceback: bool,
) -> None:
    flow = flow_cls()
    run_flow(flow, lambda: flow.execute(inputs, model=model, **budget), report, show_traceback)
