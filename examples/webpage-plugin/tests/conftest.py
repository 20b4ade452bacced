"""Fixtures: the local web site (``webpage_site``), an isolated engine, and ``flow`` subprocesses.

These tests exercise the *installed* plugin (tox installs this package, then runs them): the step type
and the flow are found through their entry points, exactly as a user's ``pip install`` makes them.
Nothing here reaches past 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from webpage_site import Site, SiteServer

# litellm fetches its price list from the network on import unless told not to
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


@pytest.fixture(scope="session")
def _site_server() -> Iterator[SiteServer]:
    server = SiteServer()
    thread = threading.Thread(target=server.serve_forever, name="webpage-test-site", daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def site(_site_server: SiteServer) -> Site:
    """The local site, with its request log cleared for this test."""
    _site_server.hits.clear()
    return Site(_site_server)


@pytest.fixture(autouse=True)
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A fresh engine per test: memory storage, the offline model, no FLOW_ENGINE_* from the environment."""
    from flow_engine import configure
    from flow_engine.engine import reset_engine

    for name in list(os.environ):
        if name.startswith("FLOW_ENGINE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    engine = configure(data_dir=tmp_path / "data", database_url="memory://")
    yield engine
    reset_engine()


# -- the `flow` command ---------------------------------------------------------------------------
@dataclass
class Completed:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def flow_command() -> list[str]:
    """The ``flow`` console script installed beside this Python (what a user runs)."""
    script = Path(sys.executable).with_name("flow")
    return [str(script)] if script.exists() else [sys.executable, "-m", "flow_engine.cli.main"]


@pytest.fixture
def flow(tmp_path: Path) -> Callable[..., Completed]:
    """Run ``flow ARGS`` in a subprocess with its own data folder and in-memory storage, offline.

    Keyword arguments are extra environment variables (``FLOW_ENGINE_DATABASE_URL=...``).
    """

    def run(*args: str, timeout: float = 120, **extra_env: str) -> Completed:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLOW_ENGINE_")}
        env.update(
            FLOW_ENGINE_DATABASE_URL="memory://",
            FLOW_ENGINE_DATA_DIR=str(tmp_path / "data"),
            LITELLM_LOCAL_MODEL_COST_MAP="True",
            NO_COLOR="1",
        )
        env.update(extra_env)
        proc = subprocess.run(
            [*flow_command(), *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=timeout,
        )
        return Completed(proc.returncode, proc.stdout, proc.stderr)

    return run
