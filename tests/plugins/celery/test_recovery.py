"""Dead workers' runs taken over by live workers' recovery scans, with real ``flow worker`` processes on
Redis (its default visibility timeout: an hour, so the broker itself never redelivers during the test)
and on RabbitMQ (which gives a dead worker's messages to the survivor at once).

Short timings keep it to seconds: heartbeat every 0.3 s, stale after 3 s, a scan at least once a
second, a pending run's message counted lost after 2 s.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from tests.fake_openai_server import Fault
from tests.plugins.celery.services import Deployment, Worker, deployment
from tests.plugins.celery.worker_flows import answer_of, prompt_of

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

STALE_AFTER = 3.0
SCAN_INTERVAL = 1.0
TIMINGS = {
    "FLOW_ENGINE_HEARTBEAT_INTERVAL": "0.3",
    "FLOW_ENGINE_STALE_AFTER": f"{STALE_AFTER:g}",
    "FLOW_ENGINE_RECOVERY_INTERVAL": f"{SCAN_INTERVAL:g}",
    "FLOW_ENGINE_RECOVERY_PENDING_AFTER": "2",
    "FLOW_ENGINE_REQUEST_TIMEOUT": "120",  # a held request must not time out and be asked again
}
FLOW_REF = "tests.plugins.celery.worker_flows:Questions"
RUNS, STEPS = 20, 4
CLAIM_SLACK = 1.5  # seconds between a scan deciding and its claim being stored, on a loaded machine
FINISH_MARGIN = 10.0  # seconds for the taken-over runs' remaining steps, on a loaded machine


@pytest.fixture(scope="module", params=["redis", "amqp"])
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    folder = tmp_path_factory.mktemp(f"recovery-{request.param}")
    with deployment(folder, broker=request.param, latency_ms=100, timings=TIMINGS) as setup:
        yield setup


def only_worker(cluster: Deployment) -> Worker:
    """One live worker and no other, so that it gets every message (idle workers are killed)."""
    alive = [w for w in cluster.workers if w.alive()]
    for extra in alive[1:]:
        extra.kill()
    return alive[0] if alive else cluster.start_workers(1)[0]


def submit(cluster: Deployment, count: int, topic: str, steps: int) -> list[uuid.UUID]:
    done = cluster.python("-m", "tests.plugins.celery.submit_many", str(count), topic, str(steps))
    assert done.returncode == 0, done.stderr
    return [uuid.UUID(i) for i in json.loads(done.stdout)]


def prompt_counts(cluster: Deployment) -> Counter[str]:
    return Counter(r.messages[-1]["content"] for r in cluster.fake.chat_requests)


def stored_run(cluster: Deployment, status: str, topic: str, **fields: Any) -> uuid.UUID:
    """A background run written straight to the database, as a dead worker or a lost message leaves it."""
    from flow_engine.plugin import RunRecord

    record = RunRecord(
        flow_name="celery_questions",
        status=status,
        execution_mode="background",
        inputs={"topic": topic, "count": 2},
        flow_metadata={"flow_ref": FLOW_REF, "background": {"executor": "celery"}},
        **fields,
    )
    asyncio.run(cluster.store.create_run(record))
    return record.id


def test_a_slow_but_live_worker_keeps_its_run_while_orphans_are_taken_over(cluster):
    workers = cluster.live_workers(2)
    # its first LLM call is answered after twice FLOW_ENGINE_STALE_AFTER and more: slow, not dead
    cluster.fake.answer(prompt_of("slow-0", 1), Fault.hold())
    [slow_id] = submit(cluster, 1, "slow", 2)
    claimed = cluster.wait_until(
        lambda: cluster.store.get_run(slow_id).claimed_by, 30, "the slow run's start"
    )
    owner = cluster.worker_of(claimed)
    [scanner] = [w for w in workers if w is not owner]
    # and two orphans the scans must find meanwhile: a dead worker's run, and a pending one whose
    # message was never sent
    long_ago = cluster.store.get_run(slow_id).created_at - timedelta(seconds=60)
    dead_id = stored_run(
        cluster,
        "running",
        "dead",
        claimed_by="celery:gone:1:000000",
        created_at=long_ago,
        started_at=long_ago,
        last_heartbeat=long_ago,
    )
    lost_id = stored_run(cluster, "pending", "lost")
    time.sleep(2 * STALE_AFTER + SCAN_INTERVAL)
    cluster.fake.release()

    run = cluster.wait_until(
        lambda: (r := cluster.store.get_run(slow_id)).status == "completed" and r, 30, "the slow run"
    )
    assert cluster.worker_of(run.claimed_by) is owner
    assert "takeovers" not in run.flow_metadata and "resumed" not in run.flow_metadata
    counts = prompt_counts(cluster)
    assert counts[prompt_of("slow-0", 1)] == 1 and counts[prompt_of("slow-0", 2)] == 1

    for orphan_id, status in ((dead_id, "running"), (lost_id, "pending")):
        orphan = cluster.wait_until(
            lambda i=orphan_id: (r := cluster.store.get_run(i)).status == "completed" and r, 30, "an orphan"
        )
        [takeover] = orphan.flow_metadata["takeovers"]
        assert takeover["previous_status"] == status
        assert cluster.worker_of(orphan.claimed_by) in (owner, scanner)
    logs = owner.log() + scanner.log()
    assert f"run {lost_id} (celery_questions): pending for" in logs
    assert f"run {dead_id} (celery_questions): recovered from celery:gone:1:000000" in logs


def test_the_runs_of_a_killed_worker_resume_within_stale_after_and_one_scan(cluster):
    victim = only_worker(cluster)
    third = prompt_of("", 3).removesuffix(" ")  # "question 3 about": every run stops before step 3
    cluster.fake.answer(third, Fault.hold())
    ids = submit(cluster, RUNS, "kill", STEPS)

    def held_at_step_3() -> list[Any] | None:
        runs = [cluster.store.get_run(i) for i in ids]
        at_3 = all(r.step_progress == 2 and r.status == "running" for r in runs)
        return runs if at_3 and prompt_counts(cluster)[prompt_of("kill-0", 3)] == 1 else None

    runs = cluster.wait_until(held_at_step_3, 60, "every run to wait for its third answer")
    assert {cluster.worker_of(r.claimed_by).name for r in runs} == {victim.name}
    [rescuer] = cluster.start_workers(1)  # the runs wait meanwhile: their step 3 is held
    held = len([r for r in cluster.fake.chat_requests if r.outcome == "held"])
    assert held == RUNS

    completed_before = {
        i: {s.step_key for s in cluster.store.list_steps(i) if s.status == "completed"} for i in ids
    }
    victim.kill()  # SIGKILL: no acknowledgement, no goodbye; its heartbeats stop
    killed_at = time.monotonic()
    cluster.fake.release()  # the victim's held requests are answered into the void

    def all_completed() -> list[Any] | None:
        runs = [cluster.store.get_run(i) for i in ids]
        return runs if all(r.status == "completed" for r in runs) else None

    runs = cluster.wait_until(all_completed, 60, "the takeover of every run")
    took = time.monotonic() - killed_at
    # taken over within STALE_AFTER + one scan of the last heartbeat (below, per run), then two more
    # steps: a resumed run's first LLM call in a fresh worker process costs a second or two
    assert took < STALE_AFTER + SCAN_INTERVAL + FINISH_MARGIN, took

    counts = prompt_counts(cluster)
    for run in runs:
        topic = run.inputs["topic"]
        assert run.outputs == {"topic": topic, "answers": [answer_of(topic, n) for n in range(1, STEPS + 1)]}
        assert cluster.worker_of(run.claimed_by) is rescuer
        [takeover] = run.flow_metadata["takeovers"]  # taken over once, by one worker
        assert takeover["previous_owner"].split(":")[2] == str(victim.pid)
        assert takeover["by"] == run.claimed_by and takeover["previous_status"] == "running"
        assert STALE_AFTER <= takeover["dead_for_s"] <= STALE_AFTER + SCAN_INTERVAL + CLAIM_SLACK
        assert run.flow_metadata["resumed"][0]["previous_status"] == "running"
        assert [s.step_key for s in cluster.store.list_steps(run.id)] == ["ask", "ask#2", "ask#3", "ask#4"]
        assert completed_before[run.id] == {"ask", "ask#2"}
        # completed steps: no LLM call again; the step in flight: asked by both; after it: once
        assert [counts[prompt_of(topic, n)] for n in range(1, STEPS + 1)] == [1, 1, 2, 1]
        line = f"run {run.id} (celery_questions): recovered from {takeover['previous_owner']}, dead for"
        assert line in rescuer.log()

    shown = cluster.flow("show", str(runs[0].id))
    assert shown.returncode == 0 and "taken over" in shown.stdout and str(victim.pid) in shown.stdout

    # the original messages again (Redis would send them after its visibility timeout): nothing happens
    from flow_engine.plugins.celery.app import TASK_NAME, create_app
    from flow_engine.plugins.celery.settings import CelerySettings

    env = cluster.env()
    app = create_app(
        CelerySettings(
            broker_url=cluster.broker_url,
            celery_queue=env["FLOW_ENGINE_CELERY_QUEUE"],
            celery_key_prefix=env["FLOW_ENGINE_CELERY_KEY_PREFIX"],
        )
    )
    try:
        for run_id in ids:
            app.send_task(TASK_NAME, args=[str(run_id)])
    finally:
        app.close()
    cluster.wait_until(
        lambda: all(f"run {i} already completed; nothing to do" in rescuer.log() for i in ids),
        30,
        "the copies to be delivered",
    )
    assert prompt_counts(cluster) == counts
    assert all(len(cluster.store.get_run(i).flow_metadata["takeovers"]) == 1 for i in ids)
