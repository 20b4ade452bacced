"""An LLM request in flight when its process is killed keeps its ``llm_requests`` row (issue 22.7): the
attempt is written ``in_flight`` before it is sent, becomes ``interrupted`` when the run is found
crashed, and stays in the run's history (``flow show``) after the resume that completes the run."""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from flow_engine import configure
from flow_engine.engine import get_engine
from tests.cli.conftest import flow_command
from tests.fake_openai_server import API_KEY, Fault, Reply

FLOWS = """
from typing import Any
from pydantic import BaseModel
from flow_engine import BaseFlow, UnstructuredStep


class Ask(UnstructuredStep):
    step_name = "ask"
    model = "openai/gpt-4o-mini"

    class Inputs(BaseModel):
        prompt: str


class TwoQuestions(BaseFlow):
    flow_name = "two_questions"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        first = (await Ask().execute({"prompt": "first question"})).output_content
        second = (await Ask().execute({"prompt": "slow question"})).output_content
        return {"first": first, "second": second}
"""


def wait_until(condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")
def test_a_request_cut_off_by_sigkill_is_recorded_interrupted_and_kept(fake_openai, tmp_path: Path):
    (tmp_path / "two_questions.py").write_text(textwrap.dedent(FLOWS), encoding="utf-8")
    database = f"sqlite:///{tmp_path / 'runs.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOW_ENGINE_")}
    env.update(
        FLOW_ENGINE_API_BASE=fake_openai.base_url,
        FLOW_ENGINE_API_KEY=API_KEY,
        FLOW_ENGINE_DATABASE_URL=database,
        FLOW_ENGINE_DATA_DIR=str(tmp_path),
        FLOW_ENGINE_HEARTBEAT_INTERVAL="0.2",
        FLOW_ENGINE_STALE_AFTER="1",
    )
    fake_openai.answer("first question", Reply("first answer"))
    fake_openai.answer("slow question", Fault.hold())  # never answered while the first process lives
    target = f"{tmp_path / 'two_questions.py'}:TwoQuestions"
    process = subprocess.Popen(
        [*flow_command(), "run", target],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: len(fake_openai.chat_requests) == 2, "the slow request to reach the server")
        store = configure(database_url=database).store
        [in_flight] = [r for r in store.list_llm_requests() if r.status == "in_flight"]
        assert "slow question" in str(in_flight.request_messages)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)

    time.sleep(1.2)  # the dead process's heartbeat goes stale
    recovered = subprocess.run(
        [*flow_command(), "recover"], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert recovered.returncode == 0, recovered.stderr
    [interrupted] = [r for r in store.list_llm_requests() if r.id == in_flight.id]
    assert interrupted.status == "interrupted" and "died" in (interrupted.error_message or "")

    fake_openai.release()
    fake_openai.answer("slow question", Reply("second answer"))
    run_id = interrupted.flow_run_id
    resumed = subprocess.run(
        [*flow_command(), "resume", str(run_id)], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    get_engine().close()
    store = configure(database_url=database).store
    assert store.get_run(run_id).status == "completed"
    statuses = sorted(r.status for r in store.list_llm_requests(flow_run_id=run_id))
    assert statuses == ["completed", "completed", "interrupted"]  # the cut-off attempt is kept
    assert len(fake_openai.chat_requests) == 3  # the first question was not asked again
    shown = subprocess.run(
        [*flow_command(), "show", str(run_id)], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert shown.returncode == 0 and "interrupted" in shown.stdout, shown.stdout
