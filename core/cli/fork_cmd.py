"""``flow fork``: a new run from one step of a recorded run, with changed inputs or another model."""

from __future__ import annotations

import asyncio

import click

from flow_engine.cli.options import db_option, reads_database
from flow_engine.errors import FlowEngineError, UsageError

from .checks import check_model
from .foreground import run_flow
from .inputs import Stdin, collect_inputs
from .report import EXIT_FAILED, EXIT_USAGE, Report


@click.command("fork")
@db_option
@click.argument("run_id")
@click.option("--from", "from_step", metavar="STEP", help="The step key to run live from (see --list).")
@click.option("--list", "list_steps", is_flag=True, help="List the run's step keys and stop.")
@click.option(
    "--input",
    "-i",
    "pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="Change an input (repeatable); KEY=@FILE reads a file. The others keep the run's values.",
)
@click.option("--inputs-file", metavar="FILE|-", help="A JSON object of inputs to change.")
@click.option("--model", "-m", metavar="MODEL", help="Run-level model for the steps that run live.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON object: run_id, status, outputs, error."
)
@click.option("--traceback", "show_traceback", is_flag=True, help="On failure, also print the traceback.")
@reads_database
def fork(
    run_id: str,
    from_step: str | None,
    list_steps: bool,
    pairs: tuple[str, ...],
    inputs_file: str | None,
    model: str | None,
    as_json: bool,
    show_traceback: bool,
) -> None:
    """Fork a run from one of its steps: a new run reuses the stored outputs of the steps before STEP
    (no LLM call) and runs live from it, with the inputs changed by --input and on --model. The
    original run is not changed; the new one records where it was forked from (flow show).

    \b
    Exit codes: 0 the fork completed; 1 it failed, was cancelled or
    stopped by its budget; 2 no such run or step, a child or running run,
    invalid inputs, an unknown --model, or its flow's code cannot be found
    (nothing recorded).
    """
    from flow_engine.engine import get_engine
    from flow_engine.fork import execute_fork, fork_points, prepare_fork
    from flow_engine.resume import flow_class_for

    report = Report(as_json)
    try:
        original = get_engine().store.load_run(run_id)
        report.flow_name = original.flow_name
        if list_steps:
            _print_points(fork_points(original))
            return
        if not from_step:
            raise UsageError("which step? give --from STEP (flow fork RUN --list shows the step keys)")
        flow_cls = flow_class_for(original)
        inputs = collect_inputs(flow_cls, pairs, inputs_file, Stdin())
        check_model(model, get_engine())  # before the new run is written
        flow, new_run = asyncio.run(prepare_fork(original, from_step, inputs=inputs, flow=flow_cls()))
    except UsageError as exc:
        report.refuse(exc, EXIT_USAGE)
    except FlowEngineError as exc:
        report.refuse(exc, EXIT_FAILED)
    click.echo(f"Forking run {original.id} from step '{from_step}': new run {new_run.id}.", err=True)
    run_flow(flow, lambda: execute_fork(flow, new_run, model=model), report, show_traceback)


def _print_points(steps: list) -> None:  # type: ignore[type-arg]
    if not steps:
        click.echo("The run has no steps to fork from.", err=True)
        return
    click.echo(f"{'#':>3}  {'step key':<32} {'status':<10} type")
    for step in steps:
        click.echo(f"{step.step_order:>3}  {step.step_key:<32} {step.status:<10} {step.step_type}")
