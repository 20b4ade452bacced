"""The built-in plugins are written as a third party's would be: every name of the plugin author's API
(``flow_engine.plugin``) comes from there, never from the module that happens to define it, so the
built-ins show the API and break first if a name leaves it."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import flow_engine.plugin as plugin_api
from tests.python_source import parse

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"


def test_built_in_plugins_import_the_plugin_api_from_flow_engine_plugin() -> None:
    found = []
    for path in sorted(PLUGINS.rglob("*.py")):
        for node in ast.walk(parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or node.level or not node.module:
                continue
            if not node.module.startswith("flow_engine.") or node.module.startswith("flow_engine.plugin"):
                continue
            module = importlib.import_module(node.module)
            for alias in node.names:
                name = alias.name
                if name in plugin_api.__all__ and getattr(module, name, None) is getattr(plugin_api, name):
                    found.append(f"{path.relative_to(PLUGINS)}:{node.lineno} {name} from {node.module}")
    assert found == [], "import these from flow_engine.plugin:\n" + "\n".join(found)
