"""``flow wait`` and ``flow run --background`` as real subprocesses: exit codes, stdout, and what is (not)
written when a run cannot be submitted. No broker is needed here: the runs waited on are made by
`flow run` or written directly; submitting to real workers is tested in tests/plugins/celery."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest

from flow_engine.plugin import RunRecord
from flow_engine.storage import utcnow
from tests.fake_openai_server import free_port


@pytest.mark.slow
def test_wait_reports_a_completed_run_exactly_like_flow_run(flow, registered_flows):
    ran = flow("run", "echo_flow", "-i", "text=hi", "--json")
    assert ran.returncode == 0, ran.stderr
    run_id = json.loads(ran.stdout)["run_id"]

    waited = flow("wait", run_id[:8], "--json")
    assert waited.returncode == 0, waited.stderr
    assert json.loads(waited.stdout) == json.loads(ran.stdout)

    plain = flow("wait", run_id)
    assert plain.returncode == 0
    assert json.loads(plain.stdout)["echo"]["text"] == "hi"  # the outputs, as `flow run` prints them
    assert f"Run {run_id} completed" in plain.stderr


def test_wait_on_a_failed_run_exits_1_with_its_error(flow, registered_flows):
    ran = flow("run", "failing_flow", "--json")
    run_id = json.loads(ran.stdout)["run_id"]
    waited = flow("wait", run_id, "--json")
    assert waited.returncode == 1
    result = json.loads(waited.stdout)
    assert (result["status"], result["run_id"]) == ("failed", run_id)
    assert "the widget exploded" in result["error"]
    assert "Error: flow 'failing_flow' failed: ValueError: the widget exploded" in waited.stderr
    assert "Traceback" not in waited.stderr


async def test_wait_gives_up_at_the_timeout_and_says_the_run_goes_on(flow, engine):
    record = RunRecord(
        flow_name="nobody_takes_it",
        execution_mode="background",
        flow_metadata={"background": {"executor": "celery"}},
    )
    await engine.store.create_run(record)
    waited = flow("wait", str(record.id), "--timeout", "0.3", "--json")
    assert waited.returncode == 1
    assert json.loads(waited.stdout)["status"] == "pending"
    assert "has not ended after 0.3s; it is pending; stopped waiting" in waited.stderr


async def test_wait_ends_on_a_crashed_run_that_no_worker_will_take_over(flow, engine):
    record = RunRecord(
        flow_name="died_with_its_process",
        status="running",
        execution_mode="background",
        last_heartbeat=utcnow() - timedelta(hours=1),
        flow_metadata={"background": {"executor": "local"}},
    )
    await engine.store.create_run(record)
    waited = flow("wait", str(record.id), "--timeout", "30")
    assert waited.returncode == 1
    assert "died_with_its_process' crashed" in waited.stderr


@pytest.mark.parametrize("timeout", ["nan", "inf", "-inf", "-1"])
def test_a_timeout_that_is_not_a_finite_number_of_seconds_is_refused(cli_invoke, engine, timeout):
    record = RunRecord(flow_name="done_already", status="completed", outputs={"ok": True})
    asyncio.run(engine.store.create_run(record))  # ended: without the check, wait would return 0 at once
    waited = cli_invoke("wait", str(record.id), f"--timeout={timeout}")
    assert waited.exit_code == 2, waited.output
    assert "Invalid value for '--timeout'" in waited.stderr and "a finite number >= 0" in waited.stderr
    assert waited.stdout == ""


def test_wait_for_an_unknown_run_is_a_usage_error(flow, engine):
    engine.store  # noqa: B018 - an existing, empty database (reading commands never create one)
    waited = flow("wait", "0123abcd")
    assert waited.returncode == 2
    assert "no run with id starting '0123abcd'" in waited.stderr


# -- flow run --background: refusals ----------------------------------------------------------------
def test_background_with_the_local_executor_is_refused(flow, registered_flows, engine):
    done = flow("run", "echo_flow", "-i", "text=x", "--background", "--executor", "local")
    assert done.returncode == 2
    assert "executor 'local' runs a flow inside the process that submits it" in done.stderr
    assert engine.store.list_runs() == []


def test_executor_without_background_is_refused(flow, registered_flows):
    done = flow("run", "echo_flow", "-i", "text=x", "--executor", "celery")
    assert done.returncode == 2 and "--executor goes with --background" in done.stderr


def test_background_without_a_broker_url_writes_nothing(flow, registered_flows, engine):
    done = flow("run", "echo_flow", "-i", "text=x", "--background", "--json")
    assert done.returncode == 2
    assert json.loads(done.stdout)["status"] == "invalid"
    assert "set FLOW_ENGINE_BROKER_URL" in done.stderr and "Traceback" not in done.stderr
    assert engine.store.list_runs() == []


def test_background_with_invalid_inputs_writes_nothing(flow, registered_flows, flow_env, engine):
    env = flow_env(FLOW_ENGINE_BROKER_URL="redis://127.0.0.1:1/0")
    done = flow("run", "echo_flow", "-i", "count=-1", "--background", env=env)
    assert done.returncode == 2 and "text" in done.stderr
    assert engine.store.list_runs() == []


@pytest.mark.slow
def test_background_to_an_unreachable_broker_fails_fast_and_records_why(
    flow, registered_flows, flow_env, engine
):
    broker = f"redis://127.0.0.1:{free_port()}/0"
    done = flow(
        "run",
        "echo_flow",
        "-i",
        "text=x",
        "--background",
        "--json",
        env=flow_env(FLOW_ENGINE_BROKER_URL=broker),
    )
    assert done.returncode == 1, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "failed" and "cannot reach the Celery broker" in result["error"]
    assert "Traceback" not in done.stderr
    [run] = engine.store.list_runs()
    assert str(run.id) == result["run_id"]
    assert (run.status, run.execution_mode) == ("failed", "background")  # never a silent "pending"
    assert f"cannot reach the Celery broker {broker}" in run.error_message
