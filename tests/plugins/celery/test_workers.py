"""Real Celery workers (``flow worker`` subprocesses) against Redis, PostgreSQL and the fake OpenAI
server in its own process: scale-out, the command line, a flow missing on the worker, a run whose
message comes back while its worker lives, a warm shutdown. (Workers killed with SIGKILL, on Redis
and RabbitMQ: test_recovery.py.)

The tests share one deployment and two workers (module scope: a worker takes seconds to start); the
SIGTERM test comes last because it stops them.
"""

from __future__ import annotations

import json
import textwrap
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest

from tests.plugins.celery.services import Deployment, Worker
from tests.plugins.celery.worker_flows import answer_of, prompt_of

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

FLOW = "tests.plugins.celery.worker_flows:Questions"


@pytest.fixture(scope="module")
def workers(cluster: Deployment) -> list[Worker]:
    return cluster.start_workers(2, concurrency=50)


@pytest.fixture
def latency(cluster: Deployment) -> Iterator[object]:
    """Set the fake server's latency (ms) for one test; the default comes back afterwards."""

    def set_latency(ms: float) -> None:
        cluster.fake.configure(latency_ms=ms)

    yield set_latency
    cluster.fake.configure(latency_ms=50)


def prompt_counts(cluster: Deployment) -> Counter[str]:
    return Counter(r.messages[-1]["content"] for r in cluster.fake.chat_requests)


def test_200_flows_submitted_from_another_process_all_complete_on_two_workers(cluster, workers):
    done = cluster.python("-m", "tests.plugins.celery.submit_many", "200", "scale", "2")
    assert done.returncode == 0, done.stderr
    ids = {uuid.UUID(i) for i in json.loads(done.stdout)}
    assert len(ids) == 200

    def finished() -> list[object] | None:
        runs = [r for r in cluster.store.list_runs(flow_name="celery_questions", limit=10_000) if r.id in ids]
        return runs if len(runs) == 200 and all(r.status in ("completed", "failed") for r in runs) else None

    runs = cluster.wait_until(finished, timeout=120, what="200 runs to finish")
    assert Counter(r.status for r in runs) == {"completed": 200}
    for run in runs:
        topic = run.inputs["topic"]
        assert run.outputs == {"topic": topic, "answers": [answer_of(topic, 1), answer_of(topic, 2)]}
        assert run.execution_mode == "background" and run.step_progress == 2
    # both workers took part, and every LLM call was made exactly once: no run was executed twice
    assert {cluster.worker_of(r.claimed_by).name for r in runs} == {"w1", "w2"}
    counts = prompt_counts(cluster)
    expected = {prompt_of(f"scale-{i}", n) for i in range(200) for n in (1, 2)}
    assert set(counts) == expected and set(counts.values()) == {1}


def test_flow_run_background_prints_the_id_and_flow_wait_prints_the_result(cluster, workers):
    submitted = cluster.flow("run", FLOW, "-i", "topic=cli", "-i", "count=2", "--background")
    assert submitted.returncode == 0, submitted.stderr
    run_id = submitted.stdout.strip()
    assert str(uuid.UUID(run_id)) == run_id
    assert f"flow wait {run_id}" in submitted.stderr

    waited = cluster.flow("wait", run_id[:8], "--timeout", "60", "--json")
    assert waited.returncode == 0, waited.stderr
    result = json.loads(waited.stdout)
    assert result["status"] == "completed" and result["run_id"] == run_id
    assert result["outputs"] == {"topic": "cli", "answers": [answer_of("cli", 1), answer_of("cli", 2)]}
    assert result["total_tokens"] > 0

    shown = json.loads(cluster.flow("show", run_id, "--json").stdout)["run"]
    assert shown["execution_mode"] == "background" and shown["claimed_by"].startswith("celery:")
    assert shown["flow_metadata"]["background"]["executor"] == "celery"


def test_a_flow_not_installed_on_the_worker_fails_the_run_with_a_clear_message(cluster, workers):
    folder = cluster.tmp / "submitter_only"
    folder.mkdir()
    (folder / "only_here.py").write_text(
        textwrap.dedent(
            """
            from flow_engine import BaseFlow

            class OnlyHere(BaseFlow):
                flow_name = "only_on_the_submitter"

                async def _execute_flow_logic(self, inputs):
                    return {"never": "run"}
            """
        )
    )
    submitted = cluster.flow("run", "only_here:OnlyHere", "--background", pythonpath=[folder])
    assert submitted.returncode == 0, submitted.stderr
    run_id = submitted.stdout.strip()

    waited = cluster.flow("wait", run_id, "--timeout", "60", pythonpath=[folder])
    assert waited.returncode == 1
    assert "Traceback" not in waited.stderr
    run = cluster.store.get_run(uuid.UUID(run_id))
    assert run.status == "failed"
    assert "cannot run flow 'only_on_the_submitter'" in run.error_message
    assert "only_here" in run.error_message  # names the module it could not import
    assert "cannot run flow 'only_on_the_submitter'" in waited.stderr


def test_a_run_delivered_again_while_its_worker_lives_is_not_executed_twice(cluster, workers, latency):
    # 3 steps of 1.5 s: longer than Redis's visibility timeout (3 s), so the message is delivered a
    # second time while the first worker is still executing the run
    latency(1500)
    done = cluster.python("-m", "tests.plugins.celery.submit_many", "1", "slow", "3")
    assert done.returncode == 0, done.stderr
    run_id = uuid.UUID(json.loads(done.stdout)[0])
    first_owner = cluster.wait_until(lambda: cluster.store.get_run(run_id).claimed_by, 30, "the claim")

    run = cluster.wait_until(
        lambda: (r := cluster.store.get_run(run_id)).status == "completed" and r, 60, "the run to complete"
    )
    assert run.claimed_by == first_owner
    assert run.outputs["answers"] == [answer_of("slow-0", n) for n in (1, 2, 3)]
    assert prompt_counts(cluster) == {prompt_of("slow-0", n): 1 for n in (1, 2, 3)}
    # the second delivery happened, found the run owned by a live worker, and left it alone
    logs = "".join(w.log() for w in cluster.workers)
    assert f"run {run_id} is being executed by {first_owner}; nothing to do" in logs
    assert "resumed" not in (run.flow_metadata or {}) and "takeovers" not in (run.flow_metadata or {})


def test_a_background_run_waits_and_its_answer_continues_it_on_a_worker(cluster, workers):
    """A submitted run reaches wait_for_input: recorded waiting, its worker free again. `flow respond`
    (another process) hands it back to the workers, which replay the first step (no second request)
    and finish it."""
    submitted = cluster.flow(
        "run", "tests.plugins.celery.worker_flows:Reviewed", "-i", "topic=review", "--background"
    )
    assert submitted.returncode == 0, submitted.stderr
    run_id = uuid.UUID(submitted.stdout.strip())

    def status() -> str | None:
        run = cluster.store.get_run(run_id)
        return run.status if run is not None else None

    cluster.wait_until(lambda: status() == "waiting", timeout=60, what="the run to wait for its answer")
    answered = cluster.flow("respond", str(run_id), "approve", "-i", "approved=true")
    assert answered.returncode == 0, answered.stderr
    assert "goes on on its executor" in answered.stderr
    cluster.wait_until(lambda: status() == "completed", timeout=60, what="a worker to finish the run")
    run = cluster.store.get_run(run_id)
    assert run.outputs == {"approved": True, "answers": [answer_of("review", 1), answer_of("review", 2)]}
    counts = prompt_counts(cluster)
    assert counts[prompt_of("review", 1)] == 1 and counts[prompt_of("review", 2)] == 1


def test_sigterm_stops_a_worker_at_once_and_its_run_goes_on_on_another(cluster, workers, latency):
    """SIGTERM (how containers stop a program): the worker exits 143 at once instead of waiting for its
    flow; the run is recorded as interrupted (crashed, saying why) and handed back to the queue; the
    next worker resumes it without repeating the step that completed."""
    import signal
    import time

    latency(4000)  # the run's second LLM call is still waiting for its answer when SIGTERM comes
    submitted = cluster.flow("run", FLOW, "-i", "topic=sigterm", "-i", "count=2", "--background")
    assert submitted.returncode == 0, submitted.stderr
    run_id = uuid.UUID(submitted.stdout.strip())

    def asked_twice() -> bool:  # the first answer came back, the second request is out
        return prompt_counts(cluster)[prompt_of("sigterm", 2)] == 1

    cluster.wait_until(asked_twice, timeout=60, what="the run to make its second LLM call")
    run = cluster.store.get_run(run_id)
    assert run is not None and run.status == "running"
    owner = cluster.worker_of(run.claimed_by)
    stopped_at = time.monotonic()
    owner.process.send_signal(signal.SIGTERM)
    assert owner.process.wait(30) == 143
    assert time.monotonic() - stopped_at < 3.5, owner.log()  # at once, not after the 4 s answer
    assert "Traceback" not in owner.log()
    run = cluster.store.get_run(run_id)
    assert run is not None and run.status in ("crashed", "running", "completed"), run
    if run.status == "crashed":
        assert "was stopped (SIGTERM)" in (run.error_message or "")
    latency(50)
    cluster.wait_until(
        lambda: cluster.store.get_run(run_id).status == "completed",
        timeout=60,
        what="another worker to resume it",
    )
    run = cluster.store.get_run(run_id)
    assert run.outputs == {"topic": "sigterm", "answers": [answer_of("sigterm", 1), answer_of("sigterm", 2)]}
    counts = prompt_counts(cluster)
    assert counts[prompt_of("sigterm", 1)] == 1  # the completed step was not run again
    assert counts[prompt_of("sigterm", 2)] == 2  # the call cut short was made again
    assert run.claimed_by and int(run.claimed_by.split(":")[2]) != owner.pid  # another worker finished it
    for worker in workers:
        if worker.alive():
            worker.process.send_signal(signal.SIGTERM)
            assert worker.process.wait(30) == 143


def test_worker_shutdown_finish_lets_the_running_flow_complete_first(cluster, workers, latency):
    """FLOW_ENGINE_WORKER_SHUTDOWN=finish: Celery's warm shutdown; the run completes, exit 0."""
    import signal

    [patient] = cluster.start_workers(1, FLOW_ENGINE_WORKER_SHUTDOWN="finish")
    latency(1500)
    submitted = cluster.flow("run", FLOW, "-i", "topic=finish", "-i", "count=1", "--background")
    assert submitted.returncode == 0, submitted.stderr
    run_id = uuid.UUID(submitted.stdout.strip())
    cluster.wait_until(
        lambda: prompt_counts(cluster)[prompt_of("finish", 1)] == 1,
        timeout=30,
        what="the run to call the LLM",
    )
    patient.process.send_signal(signal.SIGTERM)
    assert patient.process.wait(30) == 0
    run = cluster.store.get_run(run_id)
    assert run is not None and run.status == "completed", patient.log()
