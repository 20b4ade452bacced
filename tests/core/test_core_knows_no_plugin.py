"""The core holds no news, Celery or SQL specifics: it imports no plugin and names none in code.

Prose (docstrings, help texts, error messages with example URLs) may mention them; code may not: no
identifier, no string that *is* a plugin's name or module. The only places allowed to name built-in
plugins are listed below, each for a reason."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.python_source import parse

CORE = Path(__file__).resolve().parents[2] / "core"
SPECIFIC = re.compile(r"(?i)celery|news|sqlalchemy")
PLUGIN_NAME = re.compile(r"(?i)(celery|news|sql|sqlite|sqlalchemy|flow_engine\.plugins(\..*)?)")
ALLOWED_IMPORTS = {"public.py"}  # the seed's built-in step classes, for type checkers only
ALLOWED_STRINGS = {
    "public.py",  # re-exports the seed's built-in step classes on first use, by module name
    "plugin_manager.py",  # DEFAULT_PLUGINS: the built-ins, by module name (pytest's default_plugins)
    "plugin_types.py",  # the deprecated alias of NewsSourceInfo, pointing at its new home
}


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            if isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _problems(path: Path, root: Path = CORE) -> list[str]:
    rel = str(path.relative_to(root))
    tree = parse(path.read_text())
    docs = _docstrings(tree)
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names = [("." * node.level) + (node.module or "")]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            names = []
        for name in names:
            parts = name.lstrip(".").split(".")
            relative_plugins = name.startswith(".") and parts[0] == "plugins"
            if ("flow_engine.plugins" in name or relative_plugins) and rel not in ALLOWED_IMPORTS:
                problems.append(f"{rel}:{node.lineno} imports {name}")
        identifier = getattr(node, "id", None) or getattr(node, "attr", None) or getattr(node, "arg", None)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            identifier = node.name
        if isinstance(identifier, str) and SPECIFIC.search(identifier):
            problems.append(f"{rel}:{node.lineno} names {identifier}")
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            if PLUGIN_NAME.fullmatch(node.value) and rel not in ALLOWED_STRINGS:
                problems.append(f"{rel}:{node.lineno} hard-codes {node.value!r}")
    return problems


def test_core_imports_and_names_no_plugin():
    problems = [p for path in sorted(CORE.rglob("*.py")) for p in _problems(path)]
    assert not problems, "core knows a plugin:\n" + "\n".join(problems)


def test_the_check_finds_what_it_forbids(tmp_path):
    bad = tmp_path / "probe.py"
    bad.write_text('from flow_engine.plugins.sql import connect\nEXECUTOR = "celery"\nnews_feed = 1\n')
    assert len(_problems(bad, tmp_path)) == 3
