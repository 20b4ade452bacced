"""The README's "Writing a flow" example is a runnable file: copied out of README.md with its
templates, it runs with `flow run file.py:Flow` and as `python file.py` (offline model)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def _write_example(folder: Path) -> Path:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Writing a flow", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None, "no python block in the README's 'Writing a flow' section"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "article_flow.py"
    path.write_text(code.group(1), encoding="utf-8")
    templates = re.findall(r"`(prompts/[\w.]+)`\n\n```jinja\n(.*?)```", section, re.S)
    assert {name for name, _ in templates} == {"prompts/extract_content.md", "prompts/summarize.md"}
    for name, body in templates:
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_text(body, encoding="utf-8")
    return path


@pytest.mark.slow
def test_the_readme_example_runs_with_flow_run(flow, tmp_path):
    path = _write_example(tmp_path / "mine")
    result = flow("run", f"{path}:ArticleProcessingFlow", "-i", "article_text=Rivers rise.", "--json")
    assert result.returncode == 0, result.stderr
    payload = result.json()
    assert payload["status"] == "completed"
    assert set(payload["outputs"]) == {"summary", "words"}
    assert set(payload["outputs"]["summary"]) == {"title", "summary", "key_points"}


@pytest.mark.slow
def test_the_readme_example_runs_as_a_python_file(flow_env, tmp_path):
    path = _write_example(tmp_path / "mine")
    result = subprocess.run(
        [sys.executable, str(path)],
        capture_output=True,
        text=True,
        env=flow_env(),
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    printed = result.stdout.strip()
    assert printed.startswith("{") and "'summary'" in printed and "'words'" in printed
    assert "Traceback" not in result.stderr
