"""``flow list``: the registered flows, what they do and the inputs they take.

Every ``flow_engine.flows`` entry point is imported here (that is the point of a listing); one that
fails to import is shown with its error and a warning, and the others are still listed, so a broken
package never hides the working ones. Exit 0 even then: the listing itself succeeded.
"""

from __future__ import annotations

import json
from typing import Any

import click

from flow_engine.cli.options import db_option


def _flow_json(entry: Any) -> dict[str, Any]:
    from dataclasses import asdict

    from flow_engine.flow_registry import describe_inputs, flow_description

    cls = entry.flow_class
    return {
        "name": entry.name,
        "target": entry.target,
        "distribution": entry.distribution,
        "version": entry.version,
        "flow_name": cls.flow_name,
        "description": flow_description(cls),
        "total_steps": cls.total_steps,
        "inputs": [asdict(info) for info in describe_inputs(cls)],
    }


def _first_paragraph(text: str) -> str:
    return " ".join(text.split("\n\n", 1)[0].split())


def _print_text(flows: list[dict[str, Any]], failed: list[dict[str, Any]]) -> None:
    if not flows and not failed:
        click.echo("No flows are registered (entry-point group 'flow_engine.flows').")
        return
    for index, flow in enumerate(flows):
        if index:
            click.echo("")
        click.secho(flow["name"], bold=True, nl=False)
        click.echo(f"  ({flow['target']})")
        if flow["description"]:
            click.echo(f"  {_first_paragraph(flow['description'])}")
        if not flow["inputs"]:
            click.echo("  Inputs: none declared")
            continue
        click.echo("  Inputs:")
        width = max(len(i["name"]) for i in flow["inputs"])
        type_width = max(len(i["type"]) for i in flow["inputs"])
        for info in flow["inputs"]:
            if info["required"]:
                need = "required"
            else:
                need = f"default: {json.dumps(info['default'], ensure_ascii=False, default=str)}"
            line = f"    {info['name']:<{width}}  {info['type']:<{type_width}}  {need}"
            if info["description"]:
                line += f"  — {info['description']}"
            click.echo(line)
    for entry in failed:
        click.echo("")
        click.secho(entry["name"], bold=True, nl=False)
        click.echo(f"  ({entry['target']})")
        click.secho(f"  error: {entry['error']}", fg="red")
    if flows:
        click.echo("\nRun one with: flow run NAME --input KEY=VALUE ...")


@click.command("list")
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: {flows: [...], failed: [...]}.")
def list_flows(as_json: bool) -> None:
    """List the registered flows, their descriptions and inputs.

    Flows are registered with the entry-point group 'flow_engine.flows'
    (name = "module:Class"). Flows that fail to import are reported, not fatal.
    """
    from flow_engine.flow_registry import load_all

    flows: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    for entry in load_all():
        if entry.flow_class is None:
            failed.append(
                {
                    "name": entry.name,
                    "target": entry.target,
                    "distribution": entry.distribution,
                    "version": entry.version,
                    "error": entry.error,
                }
            )
        else:
            flows.append(_flow_json(entry))
    if as_json:
        for problem in failed:  # the JSON has them too; a person watching the terminal should notice
            click.echo(
                f"Warning: flow '{problem['name']}' ({problem['target']}): {problem['error']}", err=True
            )
        click.echo(json.dumps({"flows": flows, "failed": failed}, ensure_ascii=False, indent=2, default=str))
    else:
        _print_text(flows, failed)
