"""Testing flows without paying for LLM calls: a pytest plugin (``pytest11`` entry point) and helpers.

Fixtures (none is autouse; docs/testing.md has the guide):

- ``isolated_engine``: a fresh engine per test, SQLite database and data folder under ``tmp_path``, the
  offline model as default, no ``FLOW_ENGINE_*`` from the environment; ``flow_engine_settings``
  (a dict) overrides its settings;
- ``offline_model``: every LLM call answered by the offline model, even for steps pinning a real model;
- ``scripted``: a :class:`ScriptedModel`: queue exact answers per step or in order, read the prompts::

      async def test_summary(scripted):
          scripted.respond("summarize", Summary(title="T", summary="S", key_points=["a"]))
          outputs = await ArticleFlow().execute({"article_text": "..."})
          scripted.expect("summarize", contains="...")

- ``llm_cassette``: the test's LLM calls replayed from a recorded cassette (``--flow-engine-record``).

Helpers: :func:`load_run` (a run, its steps, LLM requests and child runs), :func:`cassette` (record /
replay in any code), :func:`temporary_engine` (the isolated engine outside pytest fixtures).

For storage backends: :class:`RunStoreContract` (``flow_engine.testing.store_contract``), the tests
every ``RunStore`` passes (subclass it with a ``store`` fixture; docs/plugins.md).

Only the fixtures load with pytest; everything else loads on first use (PEP 562), so projects that
install flow-engine but do not use these fixtures do not pay for importing it in every test run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .plugin import (
    flow_engine_settings,
    isolated_engine,
    llm_cassette,
    offline_model,
    pytest_addoption,
    pytest_configure,
    scripted,
    temporary_engine,
)

_LAZY = {
    "ScriptedModel": ".scripted_model",
    "ScriptedRequest": ".scripted_model",
    "ScriptedAnswerMissing": ".scripted_model",
    "load_run": ".runs",
    "LoadedRun": ".runs",
    "cassette": "..llm.cassette",
    "Cassette": "..llm.cassette",
    "CassetteError": "..llm.cassette",
    "UnrecordedRequest": "..llm.cassette",
    "RunStoreContract": ".store_contract",
}

__all__ = [
    "Cassette",
    "CassetteError",
    "LoadedRun",
    "RunStoreContract",
    "ScriptedAnswerMissing",
    "ScriptedModel",
    "ScriptedRequest",
    "UnrecordedRequest",
    "cassette",
    "flow_engine_settings",
    "isolated_engine",
    "llm_cassette",
    "load_run",
    "offline_model",
    "pytest_addoption",
    "pytest_configure",
    "scripted",
    "temporary_engine",
]

if TYPE_CHECKING:  # pragma: no cover
    from ..llm.cassette import Cassette, CassetteError, UnrecordedRequest, cassette
    from .runs import LoadedRun, load_run
    from .scripted_model import ScriptedAnswerMissing, ScriptedModel, ScriptedRequest
    from .store_contract import RunStoreContract


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'flow_engine.testing' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
