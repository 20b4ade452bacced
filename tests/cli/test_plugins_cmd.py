"""``flow plugins`` and the CLI's resilience to plugins: real entry points from throwaway distributions.

A plugin that fails to import is shown as failed with a one-line warning and breaks nothing (not
``flow --help``, not ``flow run``); two plugins claiming one step type is one error naming both;
FLOW_ENGINE_PLUGINS / FLOW_ENGINE_DISABLE_PLUGINS choose what loads.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

GOOD_PLUGIN = """
from flow_engine import BaseStep
from flow_engine.hookspecs import hookimpl
from flow_engine.plugin_types import StepTypeInfo


class ShoutStep(BaseStep):
    step_type = "shout"


@hookimpl
def register_step_types(register):
    register(StepTypeInfo("shout", ShoutStep, "shouts"))


@hookimpl
def after_step(event):
    pass


@hookimpl
def register_commands(cli):
    import click

    @cli.command("hello")
    def hello():
        "Say hello from a plugin."
        click.echo("hello from goodplug")
"""

CLAIMS_PYTHON_TOO = """
from flow_engine import BaseStep
from flow_engine.hookspecs import hookimpl
from flow_engine.plugin_types import StepTypeInfo


@hookimpl
def register_step_types(register):
    register(StepTypeInfo("{name}", BaseStep))
"""


@pytest.fixture
def good(dists):
    return dists.make("goodplug", GOOD_PLUGIN, {"flow_engine": {"goodplug": "goodplug"}}, version="1.2.3")


@pytest.fixture
def broken(dists):
    return dists.make(
        "brokenplug",
        'raise ImportError("brokenplug needs libfoo, which is not installed")\n',
        {"flow_engine": {"brokenplug": "brokenplug"}},
        version="0.0.1",
    )


@pytest.fixture
def conflicting(dists):
    for name in ("dup-a", "dup-b"):
        dists.make(
            name, CLAIMS_PYTHON_TOO.format(name="dup_type"), {"flow_engine": {name: name.replace("-", "_")}}
        )
    return dists


def _by_name(result) -> dict[str, dict]:
    return {row["name"]: row for row in json.loads(result.stdout)}


# -- listing -----------------------------------------------------------------------------------
def test_builtin_plugins_with_version_what_they_provide_and_status(flow):
    result = flow("plugins", "--json")
    assert result.returncode == 0, result.stderr
    rows = _by_name(result)
    from importlib.metadata import version

    for name in ("python_step", "unstructured", "structured", "image", "offline", "memory"):
        assert rows[name]["status"] == "loaded"
        assert rows[name]["distribution"] == "flow-engine" and rows[name]["builtin"] is True
        assert rows[name]["version"] == version("flow-engine")
    assert rows["unstructured"]["provides"]["step types"] == ["unstructured_llm"]
    assert rows["structured"]["provides"]["step types"] == ["structured_llm"]
    assert rows["python_step"]["provides"]["step types"] == ["python"]
    assert rows["offline"]["provides"]["model providers"] == ["offline"]
    assert rows["memory"]["provides"]["storage"] == ["memory (memory)"]


def test_third_party_plugin_version_step_types_and_hooks(cli_invoke, good):
    result = cli_invoke("plugins", "--json")
    assert result.exit_code == 0, result.stderr
    row = _by_name(result)["goodplug"]
    assert (row["distribution"], row["version"], row["status"], row["builtin"]) == (
        "goodplug",
        "1.2.3",
        "loaded",
        False,
    )
    assert row["provides"]["step types"] == ["shout"]
    assert sorted(row["provides"]["hooks"]) == ["after_step", "register_commands"]


def test_text_output_shows_version_status_and_provides(cli_invoke, good):
    out = cli_invoke("plugins").stdout
    assert "goodplug  goodplug 1.2.3  loaded" in out
    assert "  step types: shout" in out
    assert "unstructured  flow-engine " in out and ", built-in  loaded" in out


def test_plugin_command_is_added_to_the_cli(flow, good):
    assert "hello" in flow("--help").stdout
    result = flow("hello")
    assert result.returncode == 0 and result.stdout == "hello from goodplug\n"


# -- a plugin that fails to import -------------------------------------------------------------
def test_broken_plugin_is_shown_as_failed_with_a_warning(flow, broken, good):
    result = flow("plugins")
    assert result.returncode == 0
    assert "brokenplug  brokenplug 0.0.1  failed" in result.stdout
    assert "error: ImportError: brokenplug needs libfoo, which is not installed" in result.stdout
    assert "goodplug  goodplug 1.2.3  loaded" in result.stdout
    warning = [
        line for line in result.stderr.splitlines() if line.startswith("Warning:") and "brokenplug" in line
    ]
    assert len(warning) == 1 and "plugin 'brokenplug' (brokenplug) failed to load" in warning[0]
    assert "Traceback" not in result.stderr and "warnings.warn" not in result.stderr

    rows = _by_name(flow("plugins", "--json"))
    assert rows["brokenplug"]["status"] == "failed"
    assert rows["brokenplug"]["error"] == "ImportError: brokenplug needs libfoo, which is not installed"
    assert rows["brokenplug"]["provides"] == {}


def test_broken_plugin_does_not_break_help_list_or_run(flow, broken, flows_file):
    help_result = flow("--help")
    assert help_result.returncode == 0
    assert "Commands:" in help_result.stdout and "plugins" in help_result.stdout
    assert "Traceback" not in help_result.stderr  # help imports only plugins that add commands

    assert flow("list").returncode == 0
    ran = flow("run", "flowsrc/cli_test_flows.py:EchoFlow", "-i", "text=still works", "--json")
    assert ran.returncode == 0, ran.stderr
    assert "brokenplug" in ran.stderr  # warned where plugins are used
    assert json.loads(ran.stdout)["outputs"]["echo"]["text"] == "still works"


def test_disable_plugins_env_var(flow, flow_env, broken):
    result = flow("plugins", "--json", env=flow_env(FLOW_ENGINE_DISABLE_PLUGINS="brokenplug"))
    assert result.returncode == 0
    assert _by_name(result)["brokenplug"]["status"] == "disabled"
    assert "Warning" not in result.stderr  # a disabled plugin is not even imported


def test_plugins_env_var_selects_third_party_plugins(flow, flow_env, broken, good):
    result = flow("plugins", "--json", env=flow_env(FLOW_ENGINE_PLUGINS="goodplug"))
    assert result.returncode == 0
    rows = _by_name(result)
    assert rows["goodplug"]["status"] == "loaded"
    assert rows["brokenplug"]["status"] == "not-selected"
    assert rows["structured"]["status"] == "loaded"  # built-ins always load
    assert "Warning" not in result.stderr


# -- conflicts ---------------------------------------------------------------------------------
def test_two_plugins_claiming_one_step_type_are_reported_and_flow_plugins_still_works(flow, conflicting):
    result = flow("plugins", "--json")
    assert result.returncode == 0, result.stderr
    rows = _by_name(result)
    for name in ("dup-a", "dup-b"):
        assert rows[name]["status"] == "loaded"
        assert "step type 'dup_type' is registered by two plugins: 'dup-a' and 'dup-b'" in rows[name]["error"]
    assert "Traceback" not in result.stderr


def test_conflict_leaves_unrelated_flow_runs_usable(cli_invoke, conflicting, flows_file):
    from flow_engine.engine import get_engine

    result = cli_invoke("run", f"{flows_file}:EchoFlow", "-i", "text=x")
    assert result.exit_code == 0, result.stderr
    [run] = get_engine().store.list_runs()
    assert run.status == "completed"


def test_a_step_of_the_contested_type_fails_naming_both_plugins(conflicting, engine):
    import asyncio

    from flow_engine.errors import UsageError
    from flow_engine.steps import BaseStep

    class Contested(BaseStep):
        step_type = "dup_type"

        async def run(self, inputs):
            return "x"

    with pytest.raises(UsageError, match="'dup-a' and 'dup-b'"):
        asyncio.run(Contested().execute({}))


def test_conflict_disabled_by_env_var_resolves_it(flow, flow_env, conflicting):
    result = flow("plugins", "--json", env=flow_env(FLOW_ENGINE_DISABLE_PLUGINS="dup-b"))
    assert result.returncode == 0, result.stderr
    rows = _by_name(result)
    assert rows["dup-a"]["provides"]["step types"] == ["dup_type"]
    assert rows["dup-b"]["status"] == "disabled"


# -- `flow --help` stays light -----------------------------------------------------------------
def test_help_lists_the_commands(flow):
    result = flow("--help")
    assert result.returncode == 0
    for command in ("run", "list", "plugins", "runs", "show", "db"):
        assert f"\n  {command} " in result.stdout
    assert result.stderr == ""


def test_help_imports_neither_litellm_nor_rich(flow_env, tmp_path):
    code = textwrap.dedent(
        """
        import sys
        from flow_engine.cli.main import main
        try:
            main(["--help"])
        except SystemExit:
            pass
        heavy = sorted({m.split(".")[0] for m in sys.modules} & {"litellm", "rich"})
        print("HEAVY", heavy, file=sys.stderr)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=flow_env(), cwd=tmp_path, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "Commands:" in proc.stdout
    assert "HEAVY []" in proc.stderr
    assert "  db " in proc.stdout  # added by the SQL plugin (register_commands)


MISSPELT = """
from flow_engine.plugin import hookimpl


@hookimpl
def after_steps(event):
    pass
"""


def test_a_plugin_with_a_misspelt_hook_is_failed_and_flow_run_works(flow, dists, flows_file):
    dists.make("typoplug", MISSPELT, {"flow_engine": {"typoplug": "typoplug"}})
    listed = flow("plugins", "--json")
    assert listed.returncode == 0, listed.stderr
    [row] = [r for r in json.loads(listed.stdout) if r["name"] == "typoplug"]
    assert row["status"] == "failed"
    assert row["error"] == "implements the unknown hook 'after_steps' (did you mean 'after_step'?)"
    ran = flow("run", "flowsrc/cli_test_flows.py:EchoFlow", "-i", "text=still works", "--json")
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["outputs"]["echo"]["text"] == "still works"
