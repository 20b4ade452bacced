"""Shared fixtures: every test gets a fresh engine with its own data folder and database."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from flow_engine.engine import Engine, configure, reset_engine

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

# the fake OpenAI-compatible server (fixture `fake_openai`) lives in its own module
pytest_plugins = ["tests.fake_openai_server"]


@pytest.fixture(autouse=True)
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """A fresh engine per test: no FLOW_ENGINE_* from the environment, data under tmp_path."""
    for name in list(os.environ):
        if name.startswith("FLOW_ENGINE_") and not name.startswith("FLOW_ENGINE_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    data_dir = tmp_path / "data"
    monkeypatch.setenv("FLOW_ENGINE_DATA_DIR", str(data_dir))
    db = f"sqlite:///{tmp_path / 'flow.db'}"  # the same file `flow` subprocesses use
    eng = configure(data_dir=data_dir, database_url=db, retry_initial_delay=0.01, retry_max_delay=0.05)
    yield eng
    reset_engine()
