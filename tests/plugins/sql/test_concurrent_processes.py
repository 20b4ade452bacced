"""Several processes running flows against one SQLite file at once: no "database is locked", no lost
row. The processes start together on a file that does not exist yet, so they also race to create it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flow_engine.plugins.sql.store import SqlStore

WORKER = Path(__file__).with_name("concurrent_worker.py")
PROCESSES = 4
FLOWS_PER_PROCESS = 25


@pytest.mark.slow
def test_processes_share_one_sqlite_file_without_locking_errors_or_lost_rows(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    go = tmp_path / "go"
    procs = []
    for i in range(PROCESSES):
        ready = tmp_path / f"ready-{i}"
        args = [sys.executable, str(WORKER), url, str(FLOWS_PER_PROCESS), str(ready), str(go)]
        procs.append(
            (ready, subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        )
    deadline = time.monotonic() + 60
    while not all(ready.exists() for ready, _ in procs):
        assert time.monotonic() < deadline, "workers did not start"
        assert all(p.poll() is None for _, p in procs), [p.communicate() for _, p in procs]
        time.sleep(0.01)
    go.touch()
    run_ids: list[str] = []
    for _, proc in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
        assert "locked" not in err.lower() and "Traceback" not in err, err
        run_ids += json.loads(out)

    expected_runs = PROCESSES * FLOWS_PER_PROCESS * 2  # each parent has one child run
    assert len(set(run_ids)) == expected_runs
    store = SqlStore(url)
    try:
        runs = store.list_runs(limit=10_000)
        assert {str(r.id) for r in runs} == set(run_ids)
        assert {r.status for r in runs} == {"completed"}
        parents = [r for r in runs if r.flow_name == "mp_parent"]
        children = [r for r in runs if r.flow_name == "mp_child"]
        assert len(parents) == len(children) == expected_runs // 2
        assert {c.parent_run_id for c in children} == {p.id for p in parents}
        for run in runs:
            steps = store.list_steps(run.id)
            want = 3 if run.flow_name == "mp_parent" else 2
            assert [s.step_order for s in steps] == list(range(1, want + 1))
            assert {s.status for s in steps} == {"completed"} and run.step_progress == want
            assert run.progress_percentage == 100.0
    finally:
        store.close()
