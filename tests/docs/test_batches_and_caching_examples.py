"""The examples of docs/batches.md (fan-out) and docs/caching.md run as written (offline model)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"


def first_python_block(doc: str, after: str = "") -> str:
    text = (DOCS / doc).read_text(encoding="utf-8")
    if after:
        text = text.split(after, 1)[1]
    found = re.search(r"```python\n(.*?)```", text, re.S)
    assert found is not None
    return found.group(1)


def run(code: str, tmp_path: Path) -> str:
    (tmp_path / "example.py").write_text(code, encoding="utf-8")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    done = subprocess.run(
        [sys.executable, "example.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.slow
def test_the_fan_out_example_runs(tmp_path: Path):
    assert run(first_python_block("batches.md", "## Fan-out inside a flow"), tmp_path) == "3"


@pytest.mark.slow
def test_the_cache_example_runs(tmp_path: Path):
    assert run(first_python_block("caching.md"), tmp_path) == "True 0.0"
