"""``flow respond``: answer a run waiting at ``wait_for_input`` and continue it here."""

from __future__ import annotations

import asyncio
from typing import Any

import click

from flow_engine.cli.options import db_option, reads_database
from flow_engine.errors import FlowEngineError, UsageError

from .foreground import run_flow
from .inputs import Stdin, read_inputs_file, read_text
from .report import EXIT_FAILED, EXIT_USAGE, Report


@click.command("respond")
@db_option
@click.argument("run_id")
@click.argument("name")
@click.option(
    "--input",
    "-i",
    "pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="A field of the answer (repeatable); KEY=@FILE reads a file. Non-text fields are JSON.",
)
@click.option("--inputs-file", metavar="FILE|-", help="The answer as a JSON object ('-' reads stdin).")
@click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON object: run_id, status, outputs, error."
)
@click.option("--traceback", "show_traceback", is_flag=True, help="On failure, also print the traceback.")
@reads_database
def respond(
    run_id: str,
    name: str,
    pairs: tuple[str, ...],
    inputs_file: str | None,
    as_json: bool,
    show_traceback: bool,
) -> None:
    """Answer a run waiting for input NAME, then continue the run here: its completed steps are
    replayed from the store (no LLM call), the flow goes on live from the wait. RUN_ID may be a unique
    prefix; `flow show RUN_ID` shows what the run waits for and the answer's fields.

    \b
    Exit codes: 0 the run completed; 1 it failed (a passed deadline too),
    was cancelled or stopped by its budget; 2 no such run, not waiting for
    NAME, or an invalid answer (nothing changed: the run still waits);
    3 it waits again, at its next wait_for_input. A background run (flow run
    --background) is handed back to its executor: exit 0 once it is queued.
    """
    from flow_engine.engine import get_engine
    from flow_engine.flow_runner import resume
    from flow_engine.respond import answer_wait, hand_back, validate_answer, waiting_for

    report = Report(as_json)
    try:
        run = get_engine().store.load_run(run_id)
        report.flow_name = run.flow_name
        found = waiting_for(run)
        schema = ((found[1].inputs or {}).get("schema") or {}) if found else {}
        answer = _answer(pairs, inputs_file, schema)
        if found is not None and found[1].step_key == name:
            validate_answer(found[1], answer)  # before anything is written
        flow, root = asyncio.run(answer_wait(run.id, name, answer))
    except UsageError as exc:
        report.refuse(exc, EXIT_USAGE)
    except FlowEngineError as exc:
        report.refuse(exc, EXIT_FAILED)
    try:
        handed_back = asyncio.run(hand_back(root, type(flow)))
    except FlowEngineError as exc:
        report.refuse(exc, EXIT_FAILED)
    if handed_back:  # a background run: its executor's workers go on with it
        click.echo(f"Answered '{name}': run {root.id} goes on on its executor; flow wait {root.id}", err=True)
        if as_json:
            report.json(
                {
                    "run_id": str(root.id),
                    "flow": root.flow_name,
                    "status": "pending",
                    "outputs": None,
                    "error": None,
                }
            )
        return
    click.echo(f"Answered '{name}': run {root.id} goes on.", err=True)
    run_flow(flow, lambda: resume(flow, root), report, show_traceback)


def _answer(pairs: tuple[str, ...], inputs_file: str | None, schema: dict[str, Any]) -> dict[str, Any]:
    """The answer's fields: the JSON file's, then each ``--input``, parsed as JSON where the schema
    says the field is not text (``--input approved=true`` is a boolean)."""
    from flow_engine.human_input import field_value

    stdin = Stdin()
    data: dict[str, Any] = read_inputs_file(inputs_file, stdin) if inputs_file else {}
    properties = schema.get("properties") or {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--input '{pair}': expected KEY=VALUE (or KEY=@FILE to read a file)")
        if value.startswith("@@"):
            value = value[1:]
        elif value.startswith("@"):
            value = read_text(value[1:], f"--input {key}", stdin)
        data[key] = field_value(properties.get(key), value)
    if not data:
        raise UsageError("give the answer: --input KEY=VALUE ... or --inputs-file FILE")
    return data
