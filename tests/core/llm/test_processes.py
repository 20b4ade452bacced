"""LLM calls in worker processes (FLOW_ENGINE_LLM_PROCESSES): the same behaviour as calls made here.

The tests of ``test_calls.py`` that go through the fake server's HTTP path run again below with the
setting on (so litellm's real HTTP path runs in a worker): records, costs, retries, ``Retry-After``,
timeouts, client errors, cancellation, secrets. Then what only worker processes have: the call is
really made elsewhere, in-process providers stay here, a worker that dies is replaced and the call
retried, arguments that cannot be pickled are sent from here, workers exit with this process.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from flow_engine.engine import get_engine
from flow_engine.llm import complete, processes, wire
from tests.core.llm.test_calls import (  # noqa: F401  (collected again here, with worker processes)
    MESSAGES,
    hanging_call,
    test_a_call_inside_a_flow_is_linked_to_its_run_and_step,
    test_a_call_sends_the_request_and_records_tokens_and_cost,
    test_a_cancelled_call_is_recorded_as_cancelled,
    test_a_client_error_is_not_retried,
    test_a_failed_step_and_run_say_why,
    test_a_timeout_is_retried_after_the_configured_request_timeout,
    test_a_transient_failure_is_retried_and_every_attempt_recorded,
    test_an_unpriced_model_costs_unknown_not_zero,
    test_concurrent_calls_in_one_flow_are_each_recorded_once,
    test_connection_refused_is_retried_then_fails_clearly,
    test_image_generation_is_not_retried_by_the_sdk_either,
    test_retries_are_capped_and_the_final_failure_is_clear,
    test_retry_after_is_honoured,
    test_the_api_key_is_sent_but_never_stored_or_logged,
)
from tests.fake_openai_server import Reply, use_fake_openai

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def online(fake_openai, tmp_path):
    """The engine pointed at the fake server (the fixture of the imported tests)."""
    use_fake_openai(fake_openai.base_url, tmp_path)
    return fake_openai


@pytest.fixture(autouse=True)
def _in_worker_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every engine configured in these tests makes its network calls in one worker process."""
    monkeypatch.setenv("FLOW_ENGINE_LLM_PROCESSES", "1")


def _litellm_here_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make this process's litellm fail any call: what still works was made in a worker."""
    from flow_engine.llm.loader import load_litellm

    async def refuse(**kwargs: Any) -> Any:
        raise AssertionError("litellm was called in the flows' process")

    litellm = load_litellm()
    monkeypatch.setattr(litellm, "acompletion", refuse)
    monkeypatch.setattr(litellm, "aimage_generation", refuse)


async def test_the_call_is_made_in_a_worker_process(online, monkeypatch):
    assert get_engine().settings.llm_processes == 1
    online.script(Reply("from a worker", usage=(4, 3)))
    _litellm_here_refuses(monkeypatch)
    call = await complete(MESSAGES, model="openai/gpt-4o-mini", api_base=online.base_url)
    assert call.text == "from a worker" and call.total_tokens == 7
    assert type(call.response).__name__ == "ModelResponse"  # rebuilt here, usable as litellm's own
    assert call.response.choices[0].message.content == "from a worker"
    assert call.cost is not None and call.cost > 0
    workers = processes._workers
    assert workers is not None and workers.count == 1 and workers.alive()
    assert all(p.pid != os.getpid() for p in workers.processes)


async def test_an_in_process_provider_is_called_here(engine, monkeypatch):
    async def no_worker(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("an in-process provider's call went to a worker")

    monkeypatch.setattr(processes, "call", no_worker)
    from flow_engine import configure

    configure(database_url="memory://")
    call = await complete(MESSAGES, model="offline/default")
    assert call.text and call.provider == "offline"


async def test_a_structured_output_class_goes_to_the_worker_as_its_schema(online, monkeypatch):
    from flow_engine.llm.structured import complete_structured

    class Verdict(BaseModel):  # a class defined in a function: not picklable as it is
        label: str
        score: int

    online.script(Reply('{"label": "good", "score": 3}'))
    _litellm_here_refuses(monkeypatch)
    value, _, way = await complete_structured(
        MESSAGES,
        Verdict,
        model="openai/gpt-4o-mini",
        api_base=online.base_url,
        providers=get_engine().plugins.model_providers(),
        max_reasks=0,
        mode="native",
    )
    assert value == Verdict(label="good", score=3) and way == "native"
    [sent] = online.chat_requests
    assert sent.body["response_format"]["type"] == "json_schema"
    assert set(sent.body["response_format"]["json_schema"]["schema"]["properties"]) == {"label", "score"}


async def test_cancelling_the_caller_cancels_the_call_in_the_worker(online, monkeypatch):
    sent: list[tuple[Any, ...]] = []
    encode = wire.encode

    def spy(message: tuple[Any, ...]) -> bytes:
        sent.append(message[:2])
        return encode(message)

    monkeypatch.setattr(wire, "encode", spy)
    task = await hanging_call(online)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [(_, request_id)] = [m for m in sent if m[0] == wire.CALL]
    assert (wire.CANCEL, request_id) in sent
    pool = processes._pools[asyncio.get_running_loop()]
    assert all(not c.pending for c in pool.connections)
    online.script(Reply("still serving"))  # the worker is fine and serves the next call
    call = await complete(MESSAGES, model="openai/gpt-4o-mini", api_base=online.base_url)
    assert call.text == "still serving"


async def test_a_worker_that_dies_mid_call_is_replaced_and_the_call_retried(fake_openai, tmp_path):
    use_fake_openai(fake_openai.base_url, tmp_path, retry_max_delay=0.05, request_timeout=30)
    fake_openai.script(Reply("warm"))
    await complete(MESSAGES, model="openai/gpt-4o-mini", api_base=fake_openai.base_url)  # workers up
    old = processes._workers
    assert old is not None
    task = await hanging_call(fake_openai)
    fake_openai.script(Reply("after the crash"))
    old.processes[0].send_signal(signal.SIGKILL)
    call = await asyncio.wait_for(task, 120)
    assert call.text == "after the crash" and call.attempts == 2
    assert processes._workers is not old and processes._workers.alive()
    found = get_engine().store.list_llm_requests()
    call_id = next(r.call_id for r in found if r.id == call.request_id)
    failed, completed = sorted((r for r in found if r.call_id == call_id), key=lambda r: r.attempt)
    assert failed.status == "failed" and "worker process exited" in failed.error_message
    assert completed.status == "completed"


async def test_arguments_that_cannot_be_pickled_are_sent_from_this_process(engine):
    class Here:
        async def acompletion(self, **kwargs: Any) -> Any:
            return ("made here", kwargs["callback"]())

    result = await processes.call(Here(), "completion", {"callback": lambda: 42}, 1)
    assert result == ("made here", 42)


async def test_ctrl_c_in_the_terminal_leaves_the_workers_to_their_parent(online):
    online.script(Reply("up"))
    await complete(MESSAGES, model="openai/gpt-4o-mini")
    workers = processes._workers
    assert workers is not None
    workers.processes[0].send_signal(signal.SIGINT)  # what Ctrl-C sends to the whole process group
    await asyncio.sleep(0.5)
    assert workers.alive()
    online.script(Reply("still up"))
    assert (await complete(MESSAGES, model="openai/gpt-4o-mini")).text == "still up"


def test_a_failure_in_a_worker_keeps_its_name_status_and_retry_hint():
    class RateLimitError(Exception):
        status_code = 429

        def __init__(self) -> None:
            super().__init__("slow down")
            self.litellm_response_headers = {"Retry-After": "7"}

    from flow_engine.llm.calls import is_transient, retry_after_seconds

    exc = processes.remote_error(wire.error_info(RateLimitError()))
    assert type(exc).__name__ == "RateLimitError" and str(exc) == "slow down"
    assert exc.status_code == 429 and is_transient(exc)
    assert retry_after_seconds(exc) == 7.0
    timeout = processes.remote_error({"type": "Timeout", "types": ["Timeout", "APITimeoutError"]})
    assert is_transient(timeout)  # classified by the original class's ancestors too


def test_the_workers_exit_when_the_flows_process_exits(fake_openai, tmp_path):
    script = f"""
import asyncio, os, sys
sys.path.insert(0, {str(ROOT)!r})
from tests.fake_openai_server import Reply, use_fake_openai
from flow_engine.llm import complete, processes
from pathlib import Path
use_fake_openai({fake_openai.base_url!r}, Path({str(tmp_path)!r}), llm_processes=2)
print(asyncio.run(complete([{{"role": "user", "content": "hi"}}], model="openai/gpt-4o-mini")).text)
print(" ".join(str(p.pid) for p in processes._workers.processes), flush=True)
os._exit(0)  # no atexit handlers: the workers must notice on their own
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=180, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    text, pids = out.stdout.strip().splitlines()[-2:]
    assert text.startswith("fake answer to")
    deadline = time.monotonic() + 30
    alive = [int(p) for p in pids.split()]
    assert len(alive) == 2
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if _running(pid)]
        time.sleep(0.1)
    assert not alive, f"worker processes {alive} outlived their parent"


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by init) counts as gone
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except OSError:
        return False


# -- FLOW_ENGINE_LLM_PROCESSES=auto (the default outside these tests) ------------------------------
@pytest.fixture
def auto(fake_openai, tmp_path, monkeypatch):
    """The ``auto`` setting, no workers running, and a threshold of 3 calls in flight."""
    monkeypatch.setenv("FLOW_ENGINE_LLM_PROCESSES", "auto")
    monkeypatch.setattr(processes, "AUTO_START_AT", 3)
    monkeypatch.setattr(processes, "auto_count", lambda: 1)
    monkeypatch.setattr(processes, "_auto_failed", False)
    processes.shutdown()
    use_fake_openai(fake_openai.base_url, tmp_path)
    assert get_engine().settings.llm_processes == "auto"
    return fake_openai


async def test_auto_makes_a_lone_call_here_without_starting_workers(auto):
    auto.script(Reply("here"))
    call = await complete(MESSAGES, model="openai/gpt-4o-mini")
    assert call.text == "here"
    assert processes._workers is None


async def test_auto_starts_the_workers_once_many_calls_are_in_flight(auto, monkeypatch):
    auto.latency_ms = 300
    calls = await asyncio.gather(*(complete(MESSAGES, model="openai/gpt-4o-mini") for _ in range(5)))
    assert len(calls) == 5  # made here, while the workers start in the background
    workers = processes._workers
    assert workers is not None and workers.count == 1
    deadline = time.monotonic() + 120
    while not workers.started and time.monotonic() < deadline:  # noqa: ASYNC110 (another thread's flag)
        await asyncio.sleep(0.1)
    assert workers.started
    auto.latency_ms = 0
    _litellm_here_refuses(monkeypatch)
    auto.script(Reply("from the worker"))
    call = await complete(MESSAGES, model="openai/gpt-4o-mini")  # a lone call, now in the worker
    assert call.text == "from the worker"


async def test_auto_stays_here_if_the_workers_cannot_start(auto, monkeypatch, caplog):
    monkeypatch.setattr(processes, "_Workers", _BrokenWorkers)
    auto.latency_ms = 200
    calls = await asyncio.gather(*(complete(MESSAGES, model="openai/gpt-4o-mini") for _ in range(5)))
    assert len(calls) == 5
    await asyncio.sleep(0.2)  # the failed start is noticed by the next call
    call = await complete(MESSAGES, model="openai/gpt-4o-mini")
    assert call.text
    assert processes._auto_failed
    assert any("did not start" in r.getMessage() for r in caplog.records)
    processes.shutdown()


async def test_auto_stays_here_when_litellm_has_callbacks_in_this_process(auto, monkeypatch):
    from flow_engine.llm.loader import load_litellm

    seen: list[str] = []

    def on_success(kwargs: Any, response: Any, start: Any, end: Any) -> None:
        seen.append(response.choices[0].message.content)

    litellm = load_litellm()
    monkeypatch.setattr(litellm, "success_callback", [on_success])
    auto.latency_ms = 200
    await asyncio.gather(*(complete(MESSAGES, model="openai/gpt-4o-mini") for _ in range(5)))
    assert processes._workers is None  # a user's callback would not run in a worker


class _BrokenWorkers:
    """Workers whose start failed (what ``_Workers`` says when a worker exits before READY)."""

    def __init__(self, count: int):
        self.count = count
        self.started = False
        self.error = "an LLM worker process did not start (exit code 1, said '')"

    def alive(self) -> bool:
        return False

    def close(self) -> None:
        pass
