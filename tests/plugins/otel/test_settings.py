"""``FLOW_ENGINE_OTEL=1`` where OpenTelemetry is not installed: a setting error (exit code 2) naming the
extra to install, before anything runs; not a failed run per flow."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

# the flow command, in a process where ``import opentelemetry`` fails as on an install without the extra
WITHOUT_OPENTELEMETRY = (
    "import sys; sys.modules['opentelemetry'] = None; "
    "from flow_engine.cli.main import main; sys.argv[0] = 'flow'; main()"
)


def _flow(tmp_path: Path, *args: str, otel: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOW_ENGINE_", "OTEL_"))}
    env.update(
        FLOW_ENGINE_OTEL=otel,
        FLOW_ENGINE_DATABASE_URL=f"sqlite:///{tmp_path / 'runs.db'}",
        FLOW_ENGINE_DATA_DIR=str(tmp_path),
        FLOW_ENGINE_MODEL="offline/default",
    )
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_OPENTELEMETRY, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _runs(tmp_path: Path) -> int:
    database = tmp_path / "runs.db"
    if not database.exists():
        return 0
    with sqlite3.connect(database) as connection:
        return int(connection.execute("select count(*) from flow_runs").fetchone()[0])


def test_tracing_asked_for_without_the_sdk_is_a_setting_error(tmp_path: Path) -> None:
    done = _flow(tmp_path, "run", "article_processing", "--input", "article_text=hello", otel="1")
    assert done.returncode == 2, done.stderr
    assert (
        "invalid setting FLOW_ENGINE_OTEL: needs OpenTelemetry, which is not installed: "
        "pip install 'flow-engine[otel]'" in done.stderr
    )
    assert "Traceback" not in done.stderr
    assert _runs(tmp_path) == 0  # nothing half-written


def test_without_the_sdk_and_without_tracing_flows_run(tmp_path: Path) -> None:
    done = _flow(tmp_path, "run", "article_processing", "--input", "article_text=hello", otel="0")
    assert done.returncode == 0, done.stderr
    assert _runs(tmp_path) == 1
