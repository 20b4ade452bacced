"""``flow ui``: registered through the ``register_commands`` hook; its options; a real server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import click
import httpx
import pytest
from click.testing import CliRunner

from flow_engine.engine import get_engine

from .history import History


@pytest.fixture
def backend() -> str:
    return "sqlite"  # nothing here depends on the database


def plugin_commands() -> click.Group:
    group = click.Group("flow")
    get_engine().plugins.pm.hook.register_commands(cli=group)
    return group


def test_registered_through_the_hook() -> None:
    group = plugin_commands()
    assert "ui" in group.commands
    help_text = CliRunner().invoke(group, ["ui", "--help"]).output
    for option in ("--host", "--port", "--db", "--token", "--read-only", "--open"):
        assert option in help_text


def test_flow_ui_from_the_flow_command() -> None:
    from flow_engine.cli.main import cli

    result = CliRunner().invoke(cli, ["ui", "--help"])
    assert result.exit_code == 0 and "--read-only" in result.output


def test_other_hosts_need_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLOW_ENGINE_UI_TOKEN", raising=False)
    result = CliRunner().invoke(plugin_commands(), ["ui", "--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert "--host 0.0.0.0 makes the viewer reachable" in result.output and "Traceback" not in result.output


def test_serves_a_database_given_by_db(history: History, db_url: str, tmp_path: Path) -> None:
    """The command in its own process: it listens on loopback, on the port asked (0: a free one), and
    serves the database of --db; FLOW_ENGINE_UI_TOKEN makes it require the token."""
    env = {**os.environ, "FLOW_ENGINE_UI_TOKEN": "tok-123", "FLOW_ENGINE_DATABASE_URL": "memory://"}
    code = "from flow_engine.plugins.ui.command import ui; ui(prog_name='flow ui')"
    process = subprocess.Popen(
        [sys.executable, "-c", code, "--port", "0", "--db", db_url],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        assert process.stderr is not None
        line = ""
        deadline = time.monotonic() + 30
        while "serving" not in line and time.monotonic() < deadline:
            line = process.stderr.readline()
        found = re.search(r"serving (http://127\.0\.0\.1:\d+/)", line)
        assert found, line
        url = found.group(1)
        assert httpx.get(url + "api/runs").status_code == 401
        runs = httpx.get(url + "api/runs?limit=100", headers={"Authorization": "Bearer tok-123"}).json()
        assert str(history.ids["done"]) in [r["id"] for r in runs]
        assert "tok-123" not in process.stderr.readline()  # the token is never printed
    finally:
        process.terminate()
        process.wait(10)


def test_a_database_file_that_does_not_exist_is_refused_not_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    from flow_engine.cli.main import cli

    monkeypatch.setenv("FLOW_ENGINE_DATABASE_URL", "memory://")  # the command sets it: restored after
    monkeypatch.setattr(uvicorn.Server, "run", lambda self: None)  # never serve (a failure, not a hang)
    missing = tmp_path / "typo.db"
    result = CliRunner().invoke(cli, ["ui", "--port", "0", "--db", f"sqlite:///{missing}"])
    assert result.exit_code == 2, result.output
    assert f"no database at {missing}" in result.output and "Traceback" not in result.output
    assert not missing.exists()
