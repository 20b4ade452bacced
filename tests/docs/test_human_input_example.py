"""The "Human input" example of docs/durable-execution.md runs as written (offline model, SQLite)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "durable-execution.md"


def example() -> str:
    section = DOC.read_text(encoding="utf-8").split("## Human input: wait for a person", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_the_human_input_example_runs(tmp_path: Path):
    (tmp_path / "example.py").write_text(example(), encoding="utf-8")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    done = subprocess.run(
        [sys.executable, "example.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    first, outputs = done.stdout.strip().splitlines()[-2:]
    assert "waits for 'approve': Publish this?" in first
    assert "'note': 'ok'" in outputs and "'published': None" not in outputs
