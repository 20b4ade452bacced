"""Meta-tests (datasette-style): the documentation names every setting and every hook, exactly."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest

from flow_engine import hookspecs
from flow_engine.config import Settings
from flow_engine.plugin_manager import PluginRegistry

DOCS = Path(__file__).resolve().parents[2] / "docs"


def hookspecs_by_name() -> dict[str, Any]:
    """Every hook: the core's, and those the built-in plugins add (``register_hookspecs``)."""
    found = {
        name: fn
        for name, fn in vars(hookspecs).items()
        if inspect.isfunction(fn) and hasattr(fn, "flow_engine_spec")
    }
    for name, caller in vars(PluginRegistry().pm.hook).items():
        if not name.startswith("_") and caller.spec is not None:
            found.setdefault(name, caller.spec.function)
    return found


def hookspec_names() -> list[str]:
    return sorted(hookspecs_by_name())


def setting_names() -> list[str]:
    """The core settings and every built-in plugin's (``register_settings``)."""
    classes = [Settings, *PluginRegistry().settings_classes()]
    return sorted({name for cls in classes for name in cls.model_fields})


def test_every_setting_is_documented_as_an_environment_variable():
    text = (DOCS / "configuration.md").read_text()
    missing = [
        f"FLOW_ENGINE_{name.upper()}"
        for name in setting_names()
        if f"`FLOW_ENGINE_{name.upper()}`" not in text
    ]
    assert not missing, f"docs/configuration.md does not document: {missing}"


def test_there_are_hooks_to_document():
    assert {"register_step_types", "before_step", "after_flow"} <= set(hookspec_names())
    assert "register_news_sources" in hookspec_names()  # added by the news plugin


@pytest.mark.parametrize("name", hookspec_names())
def test_every_hook_is_in_the_reference_with_its_exact_signature(name):
    text = (DOCS / "plugins.md").read_text()
    fn = hookspecs_by_name()[name]
    signature = f"{name}{inspect.signature(fn)}".replace("'", "")
    assert f"### `{name}`" in text, f"docs/plugins.md has no section for hook {name}"
    assert signature in text, f"docs/plugins.md does not show the signature `{signature}`"


@pytest.mark.parametrize("name", hookspec_names())
def test_every_hook_has_a_test_that_implements_it(name):
    tests = Path(__file__).resolve().parents[1]
    implementing = [
        path
        for path in tests.rglob("test_*.py")
        if path != Path(__file__).resolve() and f"def {name}(" in path.read_text()
    ]
    assert implementing, f"no test implements the hook {name}"
