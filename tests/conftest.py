"""Shared fixtures: every test gets a fresh engine with its own data folder and database.

The engine comes from our own pytest plugin (``flow_engine.testing``, loaded through its ``pytest11``
entry point like in any user's project): ``isolated_engine`` hides FLOW_ENGINE_* variables, puts the
data folder under tmp_path and keeps retry delays small. Our tests differ from a user's in two settings:
the database is ``<tmp_path>/flow.db`` (the file the CLI tests' ``flow`` subprocesses are given), and no
model is configured, because many tests check what happens then (the offline fallback and its notice).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from flow_engine.engine import Engine

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

# the fake OpenAI-compatible server (fixture `fake_openai`) lives in its own module
pytest_plugins = ["tests.fake_openai_server"]


@pytest.fixture
def flow_engine_settings(tmp_path: Path) -> dict[str, Any]:
    """The plugin's settings, with no model configured (its default is the offline model) and the
    database file the CLI tests' ``flow`` subprocesses are pointed at."""
    return {"model": None, "database_url": f"sqlite:///{tmp_path / 'flow.db'}"}


@pytest.fixture(autouse=True)
def engine(isolated_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Engine:
    """A fresh engine per test (the plugin's ``isolated_engine``), run from inside tmp_path."""
    monkeypatch.chdir(tmp_path)
    return isolated_engine
