"""``flow_engine.plugin``: the plugin author's whole API, cheap to import; the old import paths still
work for this release with a DeprecationWarning naming the new import (never for the engine's own)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings

import pytest

import flow_engine.plugin as plugin_api

OLD_PATHS = [
    ("flow_engine.hookspecs", "hookimpl", "flow_engine.plugin"),
    ("flow_engine.plugin_types", "StepTypeInfo", "flow_engine.plugin"),
    ("flow_engine.plugin_types", "NewsSourceInfo", "flow_engine.plugins.news"),
    ("flow_engine.llm_step", "LLMStep", "flow_engine.plugin"),
    ("flow_engine.llm", "complete", "flow_engine.plugin"),
    ("flow_engine.steps", "StepOutput", "flow_engine.plugin"),
    ("flow_engine.storage", "RunStore", "flow_engine.plugin"),
    ("flow_engine.storage", "StorageBackendInfo", "flow_engine.plugin"),
]


@pytest.mark.parametrize(("old", "name", "new"), OLD_PATHS)
def test_an_old_import_path_warns_and_gives_the_same_object(old, name, new):
    namespace: dict[str, object] = {"__name__": "someones_plugin"}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exec(f"from {old} import {name}", namespace)  # as a third-party module would
    messages = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]
    assert len(messages) == 1, f"{len(messages)} DeprecationWarnings for {old}.{name}: once is enough"
    assert f"use `from {new} import {name}`" in messages[0]
    new_module = __import__(new, fromlist=[name])
    assert namespace[name] is getattr(new_module, name)


@pytest.mark.parametrize(("old", "name", "new"), OLD_PATHS)
def test_the_engines_own_imports_do_not_warn(old, name, new):
    namespace: dict[str, object] = {"__name__": "flow_engine.some_module"}
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        exec(f"from {old} import {name}", namespace)


def test_the_plugin_api_names_the_records_the_contract_and_the_llm_helpers():
    for name in (
        "hookimpl",
        "hookspec",
        "StepTypeInfo",
        "ModelProviderInfo",
        "ExecutorInfo",
        "StorageBackendInfo",
        "RunStore",
        "RunRecord",
        "StepRecord",
        "LLMRequestRecord",
        "RunStatus",
        "RunChanges",
        "StepChanges",
        "RunFilter",
        "RunTotals",
        "PruneResult",
        "CacheEntry",
        "CacheModelStats",
        "StorageError",
        "RunExecutor",
        "BaseStep",
        "LLMStep",
        "StepOutput",
        "complete",
        "generate_image",
        "redact_url",
    ):
        assert getattr(plugin_api, name) is not None
    assert sorted(plugin_api.__all__) == sorted(set(plugin_api.__all__))


def test_importing_the_plugin_api_is_cheap():
    code = textwrap.dedent(
        """
        import sys
        import flow_engine.plugin
        print(sorted({m.split(".")[0] for m in sys.modules} & {"litellm", "sqlalchemy", "pydantic"}))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
