"""``flow list``: registered flows with descriptions and inputs; broken entry points reported, not fatal."""

from __future__ import annotations

import json

import pytest


@pytest.fixture
def broken_flow(dists):
    """A distribution registering one flow that raises on import and one that is not a flow."""
    dists.make(
        "broken-flows",
        """
        raise RuntimeError("flow package is broken")
        """,
        {"flow_engine.flows": {"broken_flow": "broken_flows:Whatever"}},
    )
    dists.make(
        "odd-flows",
        """
        class Plain:
            pass
        """,
        {"flow_engine.flows": {"plain_thing": "odd_flows:Plain"}},
    )
    return dists


def test_list_shows_builtin_example_with_inputs(cli_invoke):
    result = cli_invoke("list")
    assert result.exit_code == 0
    out = result.stdout
    assert "article_processing  (flow_engine.examples.article_processing:ArticleProcessingFlow)" in out
    assert "Extracts an article's essential content" in out
    assert "article_text  str  required  — The article to process" in out
    assert 'style         str  default: "professional"  — Writing style' in out


def test_list_json_describes_types_defaults_and_descriptions(cli_invoke, registered_flows):
    result = cli_invoke("list", "--json")
    assert result.exit_code == 0
    payload = json.loads(result.stdout)
    flows = {f["name"]: f for f in payload["flows"]}
    echo = flows["echo_flow"]
    assert echo["target"] == "cli_test_flows:EchoFlow"
    assert echo["distribution"] == "cli-test-flows" and echo["version"] == "1.0.0"
    assert echo["description"].startswith("Echoes its inputs back")
    assert echo["total_steps"] == 1
    inputs = {i["name"]: i for i in echo["inputs"]}
    assert inputs["text"] == {
        "name": "text",
        "type": "str",
        "required": True,
        "default": None,
        "description": "Any text",
    }
    assert inputs["count"]["type"] == "int" and inputs["count"]["default"] == 1
    assert inputs["count"]["required"] is False and inputs["count"]["description"] == "How many"
    assert inputs["tags"]["type"] == "list[str]" and inputs["tags"]["default"] == []
    assert inputs["ratio"]["type"] == "float | None"
    assert inputs["mode"]["type"] == "Literal['fast', 'slow']" and inputs["mode"]["default"] == "fast"
    assert flows["model_flow"]["inputs"] == []
    assert "article_processing" in flows


def test_text_list_shows_only_the_first_paragraph(cli_invoke, registered_flows):
    out = cli_invoke("list").stdout
    assert "Echoes its inputs back, with the Python type each arrived as." in out
    assert "A second paragraph" not in out
    assert "model_flow  (cli_test_flows:ModelFlow)\n  Inputs: none declared" in out


def test_broken_entry_points_are_reported_and_others_still_listed(flow, broken_flow):
    result = flow("list")
    assert result.returncode == 0
    assert "Traceback" not in result.stderr + result.stdout
    assert "article_processing" in result.stdout
    assert "broken_flow  (broken_flows:Whatever)" in result.stdout
    assert "failed to import: RuntimeError: flow package is broken" in result.stdout
    assert "broken_flows.py, line 2" in result.stdout  # where the import broke
    assert "'odd_flows:Plain' is class Plain, not a flow" in result.stdout


def test_broken_entry_points_in_json_and_warned_on_stderr(flow, broken_flow):
    result = flow("list", "--json")
    assert result.returncode == 0
    payload = json.loads(result.stdout)
    failed = {f["name"]: f for f in payload["failed"]}
    assert {"broken_flow", "plain_thing"} <= set(failed)
    assert failed["broken_flow"]["distribution"] == "broken-flows"
    assert "RuntimeError: flow package is broken" in failed["broken_flow"]["error"]
    assert "article_processing" in {f["name"] for f in payload["flows"]}
    assert "Warning: flow 'broken_flow' (broken_flows:Whatever): failed to import" in result.stderr


def test_flow_name_registered_twice_is_reported_naming_both(cli_invoke, dists):
    for dist in ("flows-one", "flows-two"):
        dists.make(
            dist,
            "from flow_engine import BaseFlow\n\nclass F(BaseFlow):\n    pass\n",
            {"flow_engine.flows": {"same_name": f"{dist.replace('-', '_')}:F"}},
        )
    payload = json.loads(cli_invoke("list", "--json").stdout)
    [failed] = [f for f in payload["failed"] if f["name"] == "same_name"]
    assert "'flows-one' (flows_one:F)" in failed["error"] and "'flows-two' (flows_two:F)" in failed["error"]
