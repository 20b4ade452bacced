"""The store's change sets are typed: mypy refuses a misspelt column, and accepts the real ones.

mypy checks ``flow_engine.storage`` and a snippet only (imports of other modules are skipped), with
the package reached through a symlink, so the check works for an editable install and a wheel alike.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import flow_engine.storage

SNIPPET = """\
import uuid
from flow_engine.storage import RunChanges, RunStore, StepChanges

async def write(store: RunStore, run_id: uuid.UUID, step_id: uuid.UUID) -> None:
    await store.update_run(run_id, {"status": "failed", "error_message": None, "total_tokens": 3})
    await store.finish_step(step_id, {"tokens_used": 1, "cost_estimate": None}, run_id, {})
    await store.update_run(run_id, {"staus": "failed"})  # line 7
    done: StepChanges = {"tokens_usd": 1}  # line 8
    changes: RunChanges = {"total_tokens": "many"}  # line 9
"""


def test_mypy_refuses_a_misspelt_column_in_a_change_set(tmp_path: Path) -> None:
    from mypy import api as mypy_api  # in the test extra

    path = tmp_path / "path"
    path.mkdir()
    (path / "flow_engine").symlink_to(Path(flow_engine.storage.__file__).parent)
    (path / "snippet.py").write_text(textwrap.dedent(SNIPPET), encoding="utf-8")
    (tmp_path / "mypy.ini").write_text(f"[mypy]\nmypy_path = {path}\n", encoding="utf-8")
    options = ["--config-file", str(tmp_path / "mypy.ini"), "--cache-dir", str(tmp_path / "cache")]
    modules = ["-m", "flow_engine.storage", "-m", "snippet"]
    stdout, stderr, status = mypy_api.run([*options, "--follow-imports=skip", *modules])
    errors = [line for line in stdout.splitlines() if ": error:" in line]
    assert status == 1, stdout + stderr
    assert [line.split(":")[1] for line in errors] == ["7", "8", "9"], stdout
    assert 'Extra key "staus" for TypedDict "RunChanges"' in errors[0]
    assert 'Extra key "tokens_usd" for TypedDict "StepChanges"' in errors[1]
    assert '"total_tokens"' in errors[2]
