"""LLM calls in worker processes (FLOW_ENGINE_LLM_PROCESSES): the same behaviour as calls made here.

The tests of ``test_calls.py`` that go through the fake server's HTTP path run again below with the
setting on (so litellm's real HTTP path runs in a worker): records, costs, retries, ``Retry-After``,
timeouts, client errors, cancellation, secrets. Then what only worker processes have: the call is
really made elsewhere, in-process providers stay here, a worker that dies or hangs is replaced alone
and the call retried, arguments that cannot be pickled are sent from here, workers exit with this
process.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from flow_engine.engine import get_engine
from flow_engine.llm import processes, wire
from flow_engine.plugin import complete
from tests.core.llm import test_calls
from tests.core.llm.test_calls import MESSAGES, hanging_call
from tests.fake_openai_server import Fault, Reply, use_fake_openai

ROOT = Path(__file__).resolve().parents[3]
MODEL = "openai/gpt-4o-mini"


def _again(test: Any) -> Any:
    """``test_calls.py``'s test, collected again here (with worker processes), marked ``slow``: the
    copy runs where every test runs (Python 3.11), the original everywhere."""

    @functools.wraps(test)
    async def again(*args: Any, **kwargs: Any) -> Any:
        return await test(*args, **kwargs)

    again.pytestmark = [*getattr(test, "pytestmark", []), pytest.mark.slow]  # type: ignore[attr-defined]
    return again


for _name in (
    "test_a_call_inside_a_flow_is_linked_to_its_run_and_step",
    "test_a_call_sends_the_request_and_records_tokens_and_cost",
    "test_a_cancelled_call_is_recorded_as_cancelled",
    "test_a_client_error_is_not_retried",
    "test_a_missing_api_key_is_not_retried_and_says_which_to_set",
    "test_a_failed_step_and_run_say_why",
    "test_a_timeout_is_retried_after_the_configured_request_timeout",
    "test_a_transient_failure_is_retried_and_every_attempt_recorded",
    "test_an_unpriced_model_costs_unknown_not_zero",
    "test_concurrent_calls_in_one_flow_are_each_recorded_once",
    "test_connection_refused_is_retried_then_fails_clearly",
    "test_image_generation_is_not_retried_by_the_sdk_either",
    "test_retries_are_capped_and_the_final_failure_is_clear",
    "test_retry_after_is_honoured",
    "test_the_api_key_is_sent_but_never_stored_or_logged",
):
    globals()[_name] = _again(getattr(test_calls, _name))


@pytest.fixture
def online(fake_openai, tmp_path):
    """The engine pointed at the fake server (the fixture of the imported tests)."""
    use_fake_openai(fake_openai.base_url, tmp_path)
    return fake_openai


@pytest.fixture(autouse=True)
def _in_worker_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every engine configured in these tests makes its network calls in one worker process."""
    monkeypatch.setenv("FLOW_ENGINE_LLM_PROCESSES", "1")


@pytest.fixture(autouse=True)
def _workers_started(_in_worker_processes: None) -> None:
    """The worker is running before the test starts (its start, an import of litellm, takes seconds and
    is paid once per process): the timings of the tests are the calls'."""
    workers = processes._current_workers(1)
    for worker in workers.slots:
        worker.wait_ready()


def _litellm_here_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make this process's litellm fail any call: what still works was made in a worker."""
    from flow_engine.llm.loader import load_litellm

    async def refuse(**kwargs: Any) -> Any:
        raise AssertionError("litellm was called in the flows' process")

    litellm = load_litellm()
    monkeypatch.setattr(litellm, "acompletion", refuse)
    monkeypatch.setattr(litellm, "aimage_generation", refuse)


def _pids() -> list[int]:
    return processes.running()


async def _wait_for(condition: Any, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "gave up waiting"
        await asyncio.sleep(0.05)


async def test_the_call_is_made_in_a_worker_process(online, monkeypatch):
    assert get_engine().settings.llm_processes == 1
    online.script(Reply("from a worker", usage=(4, 3)))
    _litellm_here_refuses(monkeypatch)
    call = await complete(MESSAGES, model=MODEL, api_base=online.base_url)
    assert call.text == "from a worker" and call.total_tokens == 7
    assert type(call.response).__name__ == "ModelResponse"  # rebuilt here, usable as litellm's own
    assert call.response.choices[0].message.content == "from a worker"
    assert call.cost is not None and call.cost > 0
    [pid] = _pids()
    assert pid != os.getpid()


async def test_without_the_setting_no_worker_is_started(fake_openai, tmp_path, monkeypatch):
    monkeypatch.delenv("FLOW_ENGINE_LLM_PROCESSES")
    processes.shutdown()
    use_fake_openai(fake_openai.base_url, tmp_path)
    assert get_engine().settings.llm_processes == 0  # opt-in: the default is this process
    fake_openai.script(Reply("here"))
    assert (await complete(MESSAGES, model=MODEL)).text == "here"
    assert _pids() == []


@pytest.mark.parametrize("value", ["-1", "65", "auto"])
def test_a_bad_number_of_processes_is_refused(tmp_path, monkeypatch, value):
    monkeypatch.setenv("FLOW_ENGINE_LLM_PROCESSES", value)
    from flow_engine.config import Settings

    with pytest.raises(ValidationError, match="llm_processes"):
        Settings()


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
        model=MODEL,
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
    assert all(not c.pending for c in pool.connections if c is not None)
    online.script(Reply("still serving"))  # the worker is fine and serves the next call
    call = await complete(MESSAGES, model=MODEL, api_base=online.base_url)
    assert call.text == "still serving"


def test_the_pools_of_closed_event_loops_are_dropped(online):
    """One pool per event loop (``asyncio.run`` per Celery task makes many): a closed loop's pool goes
    when the next loop opens its own, and its connection is closed, not left open in the worker."""

    async def one_call() -> str:
        online.script(Reply("hi"))
        return (await complete(MESSAGES, model=MODEL)).text

    for _ in range(3):
        assert asyncio.run(one_call()) == "hi"
    assert len(processes._pools) == 1
    [(loop, pool)] = processes._pools.items()
    assert loop.is_closed() and all(c is None or c.closed for c in pool.connections)


async def test_a_server_dripping_its_answer_is_given_up_on_by_the_worker(fake_openai, tmp_path):
    """The HTTP client's timeout bounds each read: the worker bounds the whole answer, as calls here do."""
    use_fake_openai(fake_openai.base_url, tmp_path, request_timeout=0.5, max_retries=1)
    fake_openai.fail_next(Fault.drip(0.05))
    fake_openai.script(Reply("second attempt"))
    started = time.monotonic()
    call = await complete(MESSAGES, model=MODEL)
    assert call.text == "second attempt" and call.attempts == 2
    assert time.monotonic() - started < processes.deadline_of(0.5)  # the worker's answer, not the deadline
    first = next(r for r in get_engine().store.list_llm_requests() if r.attempt == 1)
    assert first.status == "failed" and "no answer within 0.5 s" in (first.error_message or "")


# -- two workers: one's trouble is its own -----------------------------------------------------------
@pytest.fixture
def two_workers(fake_openai, tmp_path, monkeypatch):
    monkeypatch.setenv("FLOW_ENGINE_LLM_PROCESSES", "2")
    use_fake_openai(fake_openai.base_url, tmp_path, retry_max_delay=0.05, request_timeout=30)
    return fake_openai


async def _warm(server: Any) -> processes._LoopPool:
    """Both workers started and connected; the next call goes to worker 0, the one after to worker 1."""
    server.script(Reply("warm"), Reply("warm"))
    await asyncio.gather(*(complete(MESSAGES, model=MODEL) for _ in range(2)))
    pool = processes._pools[asyncio.get_running_loop()]
    await _wait_for(lambda: all(c is not None and not c.closed for c in pool.connections))
    pool._next = itertools.cycle(range(2))
    return pool


@pytest.mark.slow  # starts two workers, and a third
async def test_a_worker_that_dies_mid_call_is_replaced_alone_and_its_call_retried(two_workers):
    pool = await _warm(two_workers)
    first, second = _pids()
    two_workers.latency_ms = 1500
    calls = [asyncio.ensure_future(complete(MESSAGES, model=MODEL)) for _ in range(2)]
    await _wait_for(lambda: len(two_workers.chat_requests) >= 4)  # both sent, one to each worker
    os.kill(first, signal.SIGKILL)
    on_the_dead, on_the_other = await asyncio.wait_for(asyncio.gather(*calls), 120)
    assert on_the_other.attempts == 1  # the healthy worker's call went on
    assert on_the_dead.attempts == 2  # retried (on the other worker: the dead one's slot restarts)
    await _wait_for(lambda: pool.connections[0] is not None and not pool.connections[0].closed)
    replaced, kept = _pids()
    assert kept == second and replaced not in (first, second)
    found = get_engine().store.list_llm_requests()
    failed = next(r for r in found if r.call_id == call_id_of(found, on_the_dead) and r.attempt == 1)
    assert failed.status == "failed" and "worker process exited" in (failed.error_message or "")
    two_workers.latency_ms = 0
    two_workers.script(Reply("new worker"), Reply("old worker"))
    answers = await asyncio.gather(*(complete(MESSAGES, model=MODEL) for _ in range(2)))
    assert sorted(a.text for a in answers) == ["new worker", "old worker"]


def call_id_of(found: list[Any], call: Any) -> Any:
    return next(r.call_id for r in found if r.id == call.request_id)


@pytest.mark.slow  # starts two workers, and a third
async def test_a_stuck_worker_misses_the_deadline_then_is_replaced(fake_openai, tmp_path, monkeypatch):
    """A worker that no longer answers (stopped here with SIGSTOP): the caller gives up after the request
    timeout plus a margin and retries elsewhere; a ping goes unanswered, so the worker is replaced."""
    monkeypatch.setenv("FLOW_ENGINE_LLM_PROCESSES", "2")
    monkeypatch.setattr(processes, "PING_TIMEOUT_S", 0.5)
    use_fake_openai(fake_openai.base_url, tmp_path, request_timeout=30)  # a worker's first call is slow
    pool = await _warm(fake_openai)
    use_fake_openai(fake_openai.base_url, tmp_path, request_timeout=0.5, retry_max_delay=0.05)
    assert processes._pools[asyncio.get_running_loop()] is pool  # the same workers, warm
    stuck, healthy = _pids()
    os.kill(stuck, signal.SIGSTOP)
    try:
        fake_openai.script(Reply("from the healthy one"))
        started = time.monotonic()
        call = await asyncio.wait_for(complete(MESSAGES, model=MODEL), 60)
        waited = time.monotonic() - started
        assert call.text == "from the healthy one" and call.attempts == 2
        assert processes.deadline_of(0.5) <= waited < processes.deadline_of(0.5) + 5
        found = get_engine().store.list_llm_requests()
        first = next(r for r in found if r.call_id == call_id_of(found, call) and r.attempt == 1)
        assert first.status == "failed"
        await _wait_for(lambda: _pids()[0] != stuck and pool.connections[0] is not None)
        assert _pids()[1] == healthy
        await _wait_for(lambda: not _running(stuck), 10)  # the stuck one was killed, not left behind
    finally:
        if _running(stuck):
            os.kill(stuck, signal.SIGKILL)


async def test_a_busy_worker_that_answers_its_ping_is_kept(fake_openai, tmp_path, monkeypatch):
    """A missed deadline alone does not condemn a worker: if it answers the ping, it stays."""
    monkeypatch.setattr(processes, "PING_TIMEOUT_S", 2.0)
    monkeypatch.setattr(processes, "deadline_of", lambda timeout: 0.3)  # shorter than the server takes
    use_fake_openai(fake_openai.base_url, tmp_path, request_timeout=5, max_retries=0)
    fake_openai.script(Reply("warm"))
    await complete(MESSAGES, model=MODEL)
    [pid] = _pids()
    fake_openai.latency_ms = 1000
    from flow_engine.llm.calls import LLMRequestError

    with pytest.raises(LLMRequestError, match="no answer"):
        await complete(MESSAGES, model=MODEL)
    pool = processes._pools[asyncio.get_running_loop()]
    await _wait_for(lambda: not pool.connections[0].checking, 10)
    assert _pids() == [pid] and not pool.connections[0].closed


async def test_a_worker_that_cannot_start_fails_the_call_saying_so(online, monkeypatch):
    processes.shutdown()
    monkeypatch.setattr(processes, "worker_command", lambda path: [sys.executable, "-c", "exit(3)"])
    from flow_engine.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match=r"did not start \(exit code 3"):
        await complete(MESSAGES, model=MODEL)
    [record] = get_engine().store.list_llm_requests()
    assert record.status == "failed" and "exit code 3" in (record.error_message or "")
    monkeypatch.undo()  # a working worker again: the next call starts one and succeeds
    monkeypatch.setenv("FLOW_ENGINE_LLM_PROCESSES", "1")
    online.script(Reply("started this time"))
    assert (await complete(MESSAGES, model=MODEL)).text == "started this time"
    processes.shutdown()


async def test_arguments_that_cannot_be_pickled_are_sent_from_this_process(online, monkeypatch):
    from flow_engine.llm.loader import load_litellm

    litellm = load_litellm()
    made_here: list[Any] = []
    real = litellm.acompletion

    async def spy(**kwargs: Any) -> Any:
        made_here.append(kwargs)
        return await real(**kwargs)

    monkeypatch.setattr(litellm, "acompletion", spy)
    online.script(Reply("made here"))
    local = lambda *args: None  # noqa: E731  (a function defined here: not picklable)
    call = await complete(MESSAGES, model=MODEL, callbacks=[local])
    assert call.text == "made here"
    [sent] = made_here  # made in this process, once, with the arguments as given
    assert sent["callbacks"] == [local]
    with pytest.raises(processes.NotPortable):
        await processes.call(object(), "completion", {"callback": lambda: 42}, 1, 5.0)


async def test_litellm_callbacks_set_here_are_warned_about(online, monkeypatch, caplog):
    from flow_engine.llm.loader import load_litellm

    monkeypatch.setattr(load_litellm(), "success_callback", [lambda *args: None])
    monkeypatch.setattr(processes, "_warned_callbacks", False)
    online.script(Reply("hi"))
    with caplog.at_level(logging.WARNING, logger="flow_engine.llm"):
        await complete(MESSAGES, model=MODEL)
    assert any("do not run in the LLM worker processes" in r.getMessage() for r in caplog.records)


async def test_ctrl_c_in_the_terminal_leaves_the_workers_to_their_parent(online):
    online.script(Reply("up"))
    await complete(MESSAGES, model=MODEL)
    [pid] = _pids()
    os.kill(pid, signal.SIGINT)  # what Ctrl-C sends to the whole process group
    await asyncio.sleep(0.5)
    assert _running(pid)
    online.script(Reply("still up"))
    assert (await complete(MESSAGES, model=MODEL)).text == "still up"


def test_a_failure_in_a_worker_keeps_its_name_ancestors_status_and_retry_hint():
    class RateLimitError(Exception):
        status_code = 429

        def __init__(self) -> None:
            super().__init__("slow down")
            self.litellm_response_headers = {"Retry-After": "7"}

    from flow_engine.llm.failures import classify
    from flow_engine.llm.retry_policy import is_transient, retry_after_seconds

    exc = processes.remote_error(wire.error_info(RateLimitError()))
    assert type(exc).__name__ == "RateLimitError" and str(exc) == "slow down"
    assert exc.status_code == 429 and is_transient(exc)
    assert retry_after_seconds(exc) == 7.0
    timeout = processes.remote_error({"type": "Timeout", "types": ["Timeout", "APITimeoutError"]})
    assert is_transient(timeout)  # classified by the original class's ancestors too
    assert classify(timeout, None, 3).kind == "timeout"
    refused = processes.remote_error({"types": ["BadRequestError", "APIStatusError"], "status_code": 400})
    assert not is_transient(refused) and classify(refused, None, 3).http_status == 400


@pytest.mark.slow
def test_the_workers_exit_when_the_flows_process_exits(fake_openai, tmp_path):
    script = f"""
import asyncio, os, sys
sys.path.insert(0, {str(ROOT)!r})
from tests.fake_openai_server import Reply, use_fake_openai
from flow_engine.llm import complete, processes
from pathlib import Path
use_fake_openai({fake_openai.base_url!r}, Path({str(tmp_path)!r}), llm_processes=2)
print(asyncio.run(complete([{{"role": "user", "content": "hi"}}], model="openai/gpt-4o-mini")).text)
print(" ".join(str(pid) for pid in processes.running()), flush=True)
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
    try:  # a zombie (exited, not yet reaped) counts as gone
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.slow  # starts two workers
async def test_calls_one_after_another_are_spread_over_every_worker(two_workers, monkeypatch):
    """With one call at a time (no burst opening every connection at once), the second worker is still
    connected and used: calls take the workers in turn."""
    served_by: list[int] = []
    send = processes._Connection.send

    def recording_send(self: Any, request_id: int, data: bytes) -> Any:
        served_by.append(self.worker.process.pid)
        return send(self, request_id, data)

    monkeypatch.setattr(processes._Connection, "send", recording_send)

    async def one_call() -> None:
        two_workers.script(Reply("one at a time"))
        assert (await complete(MESSAGES, model=MODEL)).text == "one at a time"

    deadline = time.monotonic() + 60  # the second worker starts (an import of litellm) meanwhile
    while len(set(served_by)) < 2:
        assert time.monotonic() < deadline, f"every call went to one worker: {served_by}"
        await one_call()
        await asyncio.sleep(0.1)
    served_by.clear()
    for _ in range(4):
        await one_call()
    assert served_by[:2] == served_by[2:] and served_by[0] != served_by[1]  # in turn
    assert sorted(served_by[:2]) == sorted(_pids())
