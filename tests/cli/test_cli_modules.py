"""The CLI's import graph: a command module imports shared CLI modules and core, never another command."""

from __future__ import annotations

import ast
from pathlib import Path

import flow_engine.cli
from tests.python_source import parse

CLI_DIR = Path(flow_engine.cli.__file__).parent
COMMANDS = {path.stem for path in CLI_DIR.glob("*_cmd.py")}
SHARED = {"report", "inputs", "progress", "format", "foreground", "background", "checks"}


def cli_imports(path: Path) -> set[str]:
    """Names of the ``flow_engine.cli`` modules that ``path`` imports, also inside functions."""
    found: set[str] = set()
    for node in ast.walk(parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level == 1:  # from .x import y / from . import x
                found.update([module.split(".")[0]] if module else [a.name for a in node.names])
            elif module.startswith("flow_engine.cli."):
                found.add(module.split(".")[2])
            elif module == "flow_engine.cli":
                found.update(a.name for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[2] for a in node.names if a.name.startswith("flow_engine.cli."))
    return found


def test_the_shared_modules_exist():
    assert SHARED <= {path.stem for path in CLI_DIR.glob("*.py")}


def test_no_command_module_imports_another_command_module():
    offenders = {
        name: sorted(cli_imports(CLI_DIR / f"{name}.py") & COMMANDS)
        for name in sorted(COMMANDS)
        if cli_imports(CLI_DIR / f"{name}.py") & COMMANDS
    }
    assert offenders == {}


def test_shared_modules_import_no_command_module():
    offenders = {name: sorted(cli_imports(CLI_DIR / f"{name}.py") & COMMANDS) for name in sorted(SHARED)}
    assert all(not found for found in offenders.values()), offenders


def test_the_check_sees_an_import_inside_a_function(tmp_path):
    sample = tmp_path / "sample_cmd.py"
    sample.write_text("def f():\n    from .run_cmd import run\n    from flow_engine.cli.wait_cmd import w\n")
    assert cli_imports(sample) == {"run_cmd", "wait_cmd"}
