"""What the browser tests and the screenshot script share: a ``flow ui`` server in its own process,
a flow running in another, and Debian's Chromium driven by Playwright.

Playwright's own browser download is not reachable from CI, so the distribution's ``chromium`` is
launched (``apt-get install chromium``; ``.ci/run`` installs it). Without it the browser tests skip
locally, and fail where services are required (``FLOW_ENGINE_TEST_REQUIRE_SERVICES``, CI).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
HINT = (
    "the browser tests need Playwright for Python (the 'test' extra) and Debian's Chromium: "
    "apt-get install chromium (.ci/run does)"
)


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return HINT + " (playwright is not installed)"
    if chromium_path() is None:
        return HINT + " (no chromium on PATH)"
    return None


def launch(playwright: Any) -> Any:
    return playwright.chromium.launch(
        executable_path=chromium_path(), args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
    )


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOW_ENGINE_")}
    env.update(extra)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    return env


@contextmanager
def ui_server(database_url: str, *options: str, cwd: Path) -> Iterator[str]:
    """``flow ui`` on a free loopback port, serving ``database_url``; yields its base URL."""
    code = "from flow_engine.plugins.ui.command import ui; ui(prog_name='flow ui')"
    args = [sys.executable, "-c", code, "--port", "0", "--db", database_url, "--poll", "0.2", *options]
    process = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, env=_env(), cwd=cwd)
    try:
        assert process.stderr is not None
        line = ""
        deadline = time.monotonic() + 60
        while "serving" not in line:
            line = process.stderr.readline()
            if (not line and process.poll() is not None) or time.monotonic() > deadline:
                raise RuntimeError(f"flow ui did not start: {line}{process.stderr.read()}")
        found = re.search(r"serving (http://\S+/)", line)
        assert found, line
        yield found.group(1).rstrip("/")
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


def start_gated_flow(database_url: str, gate_dir: Path, prompt: str, cwd: Path) -> subprocess.Popen[str]:
    """A ``GatedFlow`` (tests/plugins/ui/flows.py) in its own process: it moves on as gates open."""
    gate_dir.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, "-m", "tests.plugins.ui.flows", database_url, str(gate_dir), prompt]
    return subprocess.Popen(args, env=_env(), cwd=cwd, stderr=subprocess.PIPE, text=True)


def start_review(database_url: str, marker_dir: Path, cwd: Path) -> None:
    """A ``ReviewFlow`` run, in its own process, left waiting for its review."""
    marker_dir.mkdir(parents=True, exist_ok=True)
    code = (
        "import asyncio, sys; from flow_engine import configure; from flow_engine.errors import RunWaiting;"
        "from tests.plugins.ui.flows import ReviewFlow; configure(database_url=sys.argv[1])\n"
        "try: asyncio.run(ReviewFlow().execute({'marker_dir': sys.argv[2]}))\n"
        "except RunWaiting: pass\n"
        "else: sys.exit('ReviewFlow did not wait')"
    )
    args = [sys.executable, "-c", code, database_url, str(marker_dir)]
    subprocess.run(args, env=_env(), cwd=cwd, check=True, timeout=120)


def wait_for_run(database_url: str, flow_name: str, known: set[Any], timeout: float = 60) -> Any:
    """The id of a run of ``flow_name`` that is not in ``known``, once the store has it."""
    from flow_engine.plugins.sql.store import SqlStore
    from flow_engine.storage import RunFilter

    store = SqlStore(database_url)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = [r for r in store.find_runs(RunFilter(flow_name=flow_name)) if r.id not in known]
            if runs:
                return runs[0].id
            time.sleep(0.1)
        raise TimeoutError(f"no new run of {flow_name} appeared")
    finally:
        store.close()


def stored_run(database_url: str, run_id: Any) -> Any:
    from flow_engine.plugins.sql.store import SqlStore

    store = SqlStore(database_url)
    try:
        return store.get_run(run_id)
    finally:
        store.close()
