"""``flow runs prune`` in a real ``flow`` process: what it prints, artifacts removed with their runs,
``--dry-run`` changing nothing, FLOW_ENGINE_RETENTION as the default bound, bad input exiting 2; and
``flow runs`` still listing runs now that it is a group."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from flow_engine.plugin import LLMRequestRecord, RunRecord, StepRecord
from flow_engine.plugins.sql.store import SqlStore
from flow_engine.storage import utcnow

OLD = utcnow() - timedelta(days=200)


def seed(tmp_path: Path) -> dict[str, Any]:
    """Two old runs (one with a child run) and a recent one, each with an artifact folder."""
    store = SqlStore(f"sqlite:///{tmp_path / 'flow.db'}")
    artifacts = tmp_path / "artifacts"  # beside the SQLite file: the default artifacts folder

    async def add(created_at: Any, parent: uuid.UUID | None = None) -> uuid.UUID:
        run = RunRecord(
            flow_name="paint",
            status="completed",
            created_at=created_at,
            parent_run_id=parent,
            run_key="child#1" if parent else None,
        )
        await store.create_run(run)
        step = StepRecord(flow_run_id=run.id, step_name="s", step_key="s", step_type="image", step_order=1)
        await store.start_step(step, {})
        request = LLMRequestRecord(flow_run_id=run.id, step_run_id=step.id, model="offline/x")
        await store.record_llm_request(request)
        await store.finish_step(step.id, {"status": "completed", "llm_request_id": request.id}, run.id, {})
        folder = artifacts / str(run.id)
        folder.mkdir(parents=True)
        (folder / "s-1234abcd-0.png").write_bytes(b"\x89PNG" + b"0" * 996)
        return run.id

    async def fill() -> dict[str, Any]:
        first = await add(OLD)
        child = await add(OLD + timedelta(seconds=1), parent=first)
        second = await add(OLD + timedelta(days=1))
        recent = await add(utcnow())
        return {"old": [first, child, second], "recent": recent, "artifacts": artifacts}

    try:
        return asyncio.run(fill())
    finally:
        store.close()


def test_prune_removes_old_runs_and_their_artifacts(flow, tmp_path):
    data = seed(tmp_path)

    done = flow("runs", "prune", "--older-than", "90d")

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("Removed runs created before ")
    assert "flow_runs" in lines[1] and " 3 " in f" {lines[1]} " and "2 runs (and 1 child runs)" in lines[1]
    assert lines[2].split() == ["flow_step_runs", "3"]
    assert lines[3].split() == ["llm_requests", "3"]
    assert lines[4].split()[:3] == ["artifacts", "3", "files,"] and "2.9 KB" in lines[4]
    assert "returned to the file system" in done.stdout and "Traceback" not in done.stderr
    for run_id in data["old"]:
        assert not (data["artifacts"] / str(run_id)).exists()
    assert (data["artifacts"] / str(data["recent"]) / "s-1234abcd-0.png").is_file()
    listed = flow("runs", "--json").json()
    assert [r["id"] for r in listed] == [str(data["recent"])]


def test_dry_run_changes_nothing(flow, tmp_path):
    data = seed(tmp_path)

    done = flow("runs", "prune", "--before", (utcnow() - timedelta(days=90)).date().isoformat(), "--dry-run")

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Would remove runs created before ")
    assert "2 runs (and 1 child runs)" in done.stdout and "Freed" not in done.stdout
    for run_id in [*data["old"], data["recent"]]:
        assert (data["artifacts"] / str(run_id) / "s-1234abcd-0.png").is_file()
    assert len(flow("runs", "--json").json()) == 4


@pytest.mark.slow
def test_the_retention_setting_is_the_default_bound(flow, flow_env, tmp_path):
    data = seed(tmp_path)

    unset = flow("runs", "prune")
    assert unset.returncode == 2 and "FLOW_ENGINE_RETENTION" in unset.stderr
    assert len(flow("runs", "--json").json()) == 4

    done = flow("runs", "prune", env=flow_env(FLOW_ENGINE_RETENTION="30d"))
    assert done.returncode == 0, done.stderr
    assert [r["id"] for r in flow("runs", "--json").json()] == [str(data["recent"])]
    again = flow("runs", "prune", "--retention", env=flow_env(FLOW_ENGINE_RETENTION="30d"))
    assert again.returncode == 0 and "2 runs" not in again.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--older-than", "3x"], {}, "--older-than '3x' is not an age"),
        (["--before", "yesterday"], {}, "--before 'yesterday' is not a date"),
        (["--before", "2026-01-01", "--older-than", "9d"], {}, "not several"),
        ([], {"FLOW_ENGINE_RETENTION": "90 days"}, "FLOW_ENGINE_RETENTION '90 days' is not an age"),
        (["--older-than", "99999999999d"], {}, "--older-than '99999999999d' is too long an age"),
        (["--older-than", "400000d"], {}, "at most 365000d"),  # a timedelta, but not now - it
        ([], {"FLOW_ENGINE_RETENTION": "99999999999d"}, "FLOW_ENGINE_RETENTION '99999999999d' is too long"),
        (["--older-than", "9d", "--status", "running"], {}, "'running' is not one of"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(flow, flow_env, tmp_path, args, env, message):
    seed(tmp_path)
    done = flow("runs", "prune", *args, env=flow_env(**env))
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
    assert len(flow("runs", "--json").json()) == 4  # nothing deleted


@pytest.mark.slow
def test_the_longest_age_prunes_nothing_recent(flow, tmp_path):
    seed(tmp_path)
    done = flow("runs", "prune", "--older-than", "365000d", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Would remove runs created before ") and "0 runs" in done.stdout


@pytest.mark.slow
def test_flow_runs_is_still_the_listing(flow, tmp_path):
    data = seed(tmp_path)
    listed = flow("runs", "--limit", "2", "--json")
    assert listed.returncode == 0
    assert [r["id"] for r in listed.json()] == [str(data["recent"]), str(data["old"][2])]
    table = flow("runs", "--flow", "paint")
    assert table.returncode == 0 and table.stdout.count("paint") == 4
    assert "prune" in flow("runs", "--help").stdout


def test_db_given_after_prune_is_the_one_checked_and_pruned(flow, tmp_path):
    """``flow runs prune --db URL``: the ``runs`` group does not check its own database (the default,
    which does not exist here) before the subcommand's ``--db`` applies."""
    (tmp_path / "elsewhere").mkdir()
    data = seed(tmp_path / "elsewhere")
    assert not (tmp_path / "flow.db").exists()

    done = flow("runs", "prune", "--db", "sqlite:///elsewhere/flow.db", "--older-than", "90d")

    assert done.returncode == 0, done.stderr
    assert "2 runs (and 1 child runs)" in done.stdout
    assert not (tmp_path / "flow.db").exists()
    assert (data["artifacts"] / str(data["recent"])).is_dir()


def test_prune_with_no_database_refuses_and_creates_none(flow, tmp_path):
    done = flow("runs", "prune", "--db", "sqlite:///nowhere.db", "--older-than", "90d")
    assert done.returncode == 2 and "no database at" in done.stderr
    assert not (tmp_path / "nowhere.db").exists() and not (tmp_path / "flow.db").exists()
