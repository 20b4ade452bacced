"""The names ``flow_engine`` loads lazily are exactly the documented public API (``flow_engine.public``):
a name added to one list and forgotten in the other fails here, not in a user's import."""

from __future__ import annotations

import subprocess
import sys

import flow_engine
from flow_engine import public


def test_the_lazy_top_level_names_are_the_public_api():
    assert sorted(flow_engine._PUBLIC) == sorted(public.__all__)
    assert sorted(flow_engine.__all__) == sorted([*public.__all__, "__version__"])


def test_every_public_name_resolves_to_the_object_in_flow_engine_public():
    for name in public.__all__:
        assert getattr(flow_engine, name) is getattr(public, name), name
        assert name in public.__doc__, f"{name} is not described in the flow_engine.public docstring"


def test_import_flow_engine_loads_none_of_them():
    heavy = ("flow_engine.public", "litellm")
    code = f"import sys, flow_engine; print([m for m in {heavy!r} if m in sys.modules])"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"


def test_flow_engine_public_loads_no_plugin_until_a_built_in_step_is_asked_for():
    code = (
        "import sys, flow_engine.public as p; "
        "before = [m for m in sys.modules if m.startswith('flow_engine.plugins')]; "
        "step = p.UnstructuredStep; from flow_engine.public import NewsItem; "
        "print(before, step.__module__, NewsItem.__module__)"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.split() == [
        "[]",
        "flow_engine.plugins.unstructured",
        "flow_engine.plugins.news.models",
    ]
