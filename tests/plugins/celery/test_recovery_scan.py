"""The recovery scan and what a delivery does, in this process against the test's SQLite database and
the offline model: no broker, no worker processes (those: test_recovery.py). Runs are written in the
state a dead worker, a live one or a lost message leaves them."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest

from flow_engine.plugin import RunRecord
from flow_engine.plugins.celery.recovery import Recovery, deliver
from flow_engine.plugins.celery.settings import CelerySettings
from flow_engine.storage import utcnow

FLOW_REF = "tests.plugins.celery.worker_flows:Questions"
ME = "celery:here:1:aaaaaa"
DEAD = "celery:gone:2:bbbbbb"
STALE_AFTER = 5.0


@pytest.fixture
def flow_engine_settings(tmp_path) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return {"model": None, "database_url": f"sqlite:///{tmp_path / 'flow.db'}", "stale_after": STALE_AFTER}


def background_run(status: str, *, silent_for: float = 0.0, age: float = 0.0, **fields: Any) -> RunRecord:
    now = utcnow()
    started = now - timedelta(seconds=silent_for + 1)
    values: dict[str, Any] = {
        "flow_name": "celery_questions",
        "status": status,
        "execution_mode": "background",
        "inputs": {"topic": "t", "count": 2},
        "created_at": now - timedelta(seconds=max(age, silent_for + 1)),
        "flow_metadata": {
            "flow_ref": FLOW_REF,
            "background": {"executor": "celery", "model": None, "max_cost": None, "max_tokens": None},
        },
    }
    if status == "running":
        beat = now - timedelta(seconds=silent_for)
        values |= {"claimed_by": DEAD, "started_at": started, "last_heartbeat": beat}
    return RunRecord(**(values | fields))


async def stored(engine, *runs: RunRecord) -> list[uuid.UUID]:  # type: ignore[no-untyped-def]
    for run in runs:
        await engine.store.create_run(run)
    return [run.id for run in runs]


def scanner(engine, *, free: int = 10, waiting: int | None = 0, **settings: Any) -> Recovery:  # type: ignore[no-untyped-def]
    return Recovery(
        engine,
        ME,
        CelerySettings(**settings),
        free_slots=lambda: free,
        waiting=None if waiting is None else (lambda: waiting),
    )


async def test_the_run_of_a_dead_worker_is_taken_over_recorded_and_completed(engine, caplog):
    [run_id] = await stored(engine, background_run("running", silent_for=STALE_AFTER + 2))
    recovery = scanner(engine)
    caplog.set_level("INFO", "flow_engine")
    assert await recovery.scan() == [run_id]
    await recovery.drain()

    run = engine.store.get_run(run_id)
    assert (run.status, run.claimed_by) == ("completed", ME)
    assert len(run.outputs["answers"]) == 2
    [takeover] = run.flow_metadata["takeovers"]
    assert takeover["by"] == ME and takeover["previous_owner"] == DEAD
    assert takeover["previous_status"] == "running"
    assert STALE_AFTER + 2 <= takeover["dead_for_s"] < STALE_AFTER + 10
    assert f"run {run_id} (celery_questions): recovered from {DEAD}, dead for" in caplog.text
    assert await recovery.scan() == []  # done: nothing left to take


async def test_a_live_workers_run_is_never_taken(engine):
    live = background_run("running", silent_for=STALE_AFTER - 2)  # slow, but it beat 3 s ago
    await stored(engine, live)
    assert await scanner(engine).scan() == []
    run = engine.store.get_run(live.id)
    assert (run.status, run.claimed_by, run.last_heartbeat) == ("running", DEAD, live.last_heartbeat)
    assert "takeovers" not in run.flow_metadata


async def test_two_workers_scanning_at_once_take_each_run_once(engine):
    ids = await stored(engine, *(background_run("running", silent_for=STALE_AFTER + 1) for _ in range(6)))
    first, second = scanner(engine), scanner(engine)
    second.owner = "celery:there:3:cccccc"
    taken = await asyncio.gather(first.scan(), second.scan())
    await asyncio.gather(first.drain(), second.drain())
    assert sorted(taken[0] + taken[1]) == sorted(ids) and not set(taken[0]) & set(taken[1])
    for run_id in ids:
        run = engine.store.get_run(run_id)
        assert run.status == "completed" and len(run.flow_metadata["takeovers"]) == 1


async def test_a_worker_takes_no_more_than_its_free_slots(engine):
    ids = await stored(engine, *(background_run("running", silent_for=STALE_AFTER + 1) for _ in range(3)))
    recovery = scanner(engine, free=2)
    assert len(await recovery.scan()) == 2
    await recovery.drain()
    assert sorted(engine.store.get_run(i).status for i in ids) == ["completed", "completed", "running"]
    assert await scanner(engine, free=0).scan() == []


async def test_a_pending_run_is_started_only_when_no_message_waits_for_it(engine, caplog):
    old = background_run("pending", age=200)
    young = background_run("pending", age=10)
    await stored(engine, old, young)
    assert await scanner(engine, waiting=1, recovery_pending_after=120).scan() == []  # maybe its message
    assert await scanner(engine, waiting=None, recovery_pending_after=120).scan() == []  # not our queue
    caplog.set_level("INFO", "flow_engine")
    recovery = scanner(engine, waiting=0, recovery_pending_after=120)
    assert await recovery.scan() == [old.id]
    await recovery.drain()
    run = engine.store.get_run(old.id)
    assert run.status == "completed"
    [takeover] = run.flow_metadata["takeovers"]
    assert takeover["previous_status"] == "pending" and takeover["previous_owner"] is None
    assert takeover["pending_for_s"] >= 200
    assert f"run {old.id} (celery_questions): pending for" in caplog.text
    assert engine.store.get_run(young.id).status == "pending"


async def test_runs_that_are_not_this_executors_orphans_are_left_alone(engine):
    stale = {"silent_for": STALE_AFTER + 1}
    foreign = background_run("running", **stale)
    foreign.flow_metadata = {**foreign.flow_metadata, "background": {"executor": "local"}}
    in_process = background_run("running", execution_mode="sync", **stale)
    parent = background_run("completed")
    child = background_run("running", parent_run_id=parent.id, **stale)
    not_installed = background_run("running", **stale)
    not_installed.flow_metadata = {**not_installed.flow_metadata, "flow_ref": "nowhere_module:Nothing"}
    not_installed.flow_name = "not_here"
    ids = await stored(engine, foreign, in_process, parent, child, not_installed)
    assert await scanner(engine).scan() == []
    statuses = [engine.store.get_run(i).status for i in ids]
    assert statuses == ["running", "running", "completed", "running", "running"]


async def test_a_run_that_kills_its_workers_is_failed_after_the_last_allowed_takeover(engine):
    earlier = [{"at": "x", "by": f"w{n}", "previous_owner": f"w{n - 1}"} for n in range(2)]
    killer = background_run("running", silent_for=STALE_AFTER + 1)
    killer.flow_metadata = {**killer.flow_metadata, "takeovers": earlier}
    await stored(engine, killer)
    assert await scanner(engine, recovery_max_takeovers=2).scan() == []
    run = engine.store.get_run(killer.id)
    assert run.status == "failed" and "taken over 2 times" in run.error_message
    assert f"flow resume {killer.id}" in run.error_message
    assert run.flow_metadata["takeovers"][-1]["gave_up"] is True and len(run.flow_metadata["takeovers"]) == 3


async def test_the_scan_runs_periodically_until_stopped(engine):
    [run_id] = await stored(engine, background_run("running", silent_for=STALE_AFTER + 1))
    recovery = scanner(engine, recovery_interval=0.2)
    stop = asyncio.Event()
    scanning = asyncio.create_task(recovery.run(stop))
    for _ in range(100):
        if engine.store.get_run(run_id).claimed_by == ME:
            break
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(scanning, 2)
    await recovery.drain()
    assert engine.store.get_run(run_id).status == "completed"


# -- what a delivery does -----------------------------------------------------------------------
async def test_a_delivery_starts_a_pending_run(engine):
    [run_id] = await stored(engine, background_run("pending"))
    assert await deliver(engine, run_id, ME, CelerySettings()) == "completed"
    run = engine.store.get_run(run_id)
    assert run.claimed_by == ME and "takeovers" not in run.flow_metadata


async def test_a_delivery_again_leaves_a_running_or_ended_run_alone(engine, caplog):
    live = background_run("running", silent_for=1)
    done = background_run("completed", outputs={"topic": "t", "answers": []})
    await stored(engine, live, done)
    caplog.set_level("INFO", "flow_engine")
    assert await deliver(engine, live.id, ME, CelerySettings()) == "running"
    assert await deliver(engine, done.id, ME, CelerySettings()) == "completed"
    assert engine.store.get_run(live.id).claimed_by == DEAD
    assert f"run {live.id} is being executed by {DEAD}; nothing to do" in caplog.text
    assert await deliver(engine, uuid.uuid4(), ME, CelerySettings()) == "missing"


async def test_a_delivery_of_a_dead_workers_run_takes_it_over_like_the_scan(engine):
    [run_id] = await stored(engine, background_run("running", silent_for=STALE_AFTER + 1))
    assert await deliver(engine, run_id, ME, CelerySettings()) == "completed"
    run = engine.store.get_run(run_id)
    assert run.claimed_by == ME and run.flow_metadata["takeovers"][0]["previous_owner"] == DEAD
