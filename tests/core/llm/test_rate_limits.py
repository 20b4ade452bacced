"""Rate limits per model through the fake server: the limit holds in one process and across two
processes sharing Redis, a 429's Retry-After pauses everyone, the wait is recorded apart."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from typing import Any

import pytest

from flow_engine.engine import get_engine
from flow_engine.errors import ConfigurationError
from flow_engine.llm.rate_limits import estimate_tokens, parse_rules
from flow_engine.plugin import complete
from tests.fake_openai_server import API_KEY, Fault, Reply, use_fake_openai

MESSAGES = [{"role": "user", "content": "Say hello"}]


def busiest_second(times: list[float]) -> int:
    """The most requests the server received within any one second."""
    times = sorted(times)
    return max(sum(1 for u in times[i:] if u - t < 1.0) for i, t in enumerate(times))


def assert_rate_held(times: list[float], per_second: int) -> None:
    """The limiter admits a request when it starts: the server sees each second's requests spread by
    the client's own work (tens of ms), so the check is the one a provider makes over a longer span:
    n requests, the first ``per_second`` at once, then ``per_second`` a second, take at least
    (n - 1) // per_second seconds; within 10 %. No second gets more than two windows' worth."""
    span = max(times) - min(times)
    needed = (len(times) - 1) // per_second
    assert span >= 0.9 * needed, f"{len(times)} requests in {span:.2f}s at {per_second}/s"
    assert span <= needed + 1.5, f"the limiter starved: {span:.2f}s"
    assert busiest_second(times) <= 2 * per_second


def unique_model() -> str:
    return f"openai/rl-{uuid.uuid4().hex[:8]}"


async def warm_up(fake_openai: Any) -> None:
    """litellm's first call in a process is slow to send (~0.15 s): the limiter admits requests when
    they start, so a slow first batch would reach the server bunched up with the next one."""
    await complete(MESSAGES, model="openai/gpt-4o-mini")
    fake_openai.requests.clear()


def test_rules_are_parsed_and_mistakes_named():
    [openai, local] = parse_rules("openai/*=500rpm,200000tpm; local/*=2rps")
    assert (openai.pattern, openai.requests, openai.tokens) == ("openai/*", "500/minute", "200000/minute")
    assert (local.requests, local.tokens) == ("2/second", None)
    assert openai.matches("openai/gpt-4o-mini") and not openai.matches("anthropic/claude")
    with pytest.raises(ConfigurationError, match="'500 per minute'"):
        parse_rules("openai/*=500 per minute")
    with pytest.raises(ConfigurationError, match="MODEL_PATTERN=LIMITS"):
        parse_rules("500rpm")
    assert estimate_tokens([{"role": "user", "content": "x" * 400}], None, {"max_tokens": 50}, 2048) == 150


@pytest.mark.slow
async def test_the_request_limit_holds_in_one_process(fake_openai, tmp_path):
    model = unique_model()
    use_fake_openai(fake_openai.base_url, tmp_path, rate_limits=f"{model}=10rps")
    await warm_up(fake_openai)
    started = time.monotonic()
    await asyncio.gather(*(complete(MESSAGES, model=model) for _ in range(41)))
    took = time.monotonic() - started
    times = [r.received_at for r in fake_openai.chat_requests]
    assert len(times) == 41
    assert_rate_held(times, 10)  # 41 requests at 10 per second: 4 s
    assert took >= 3.6
    rows = [r for r in get_engine().store.list_llm_requests() if r.model == model]
    waited = [r.queue_ms for r in rows if r.queue_ms]
    assert len(waited) >= 20 and max(waited) >= 2000  # the wait is recorded apart ...
    assert all((r.latency_ms or 0) < 1000 for r in rows)  # ... and not counted as the call's time


@pytest.mark.slow
async def test_the_token_limit_holds(fake_openai, tmp_path):
    model = unique_model()
    # each call is estimated at 102 tokens (8 characters / 4 + max_tokens 100): two fit in 250 per second
    use_fake_openai(fake_openai.base_url, tmp_path, rate_limits=f"{model}=1000rps,250tps")
    await warm_up(fake_openai)
    await asyncio.gather(*(complete(MESSAGES, model=model, max_tokens=100) for _ in range(6)))
    times = [r.received_at for r in fake_openai.chat_requests]
    assert_rate_held(times, 2)  # two calls a second fit in 250 tokens


async def test_a_429_with_retry_after_pauses_every_call_of_the_model(fake_openai, tmp_path):
    model = unique_model()
    use_fake_openai(fake_openai.base_url, tmp_path, rate_limits=f"{model}=100rps", retry_max_delay=0.05)
    fake_openai.script(Fault.status(429, retry_after=1), Reply("a"), Reply("b"))
    first = asyncio.create_task(complete(MESSAGES, model=model))
    await asyncio.sleep(0.2)  # the 429 has come back by now
    second_started = time.time()
    second = await complete(MESSAGES, model=model)
    await first
    assert second.text in ("a", "b")
    later = [r.received_at for r in fake_openai.chat_requests if r.received_at >= second_started]
    assert later and min(later) - second_started >= 0.7  # it waited out the pause the server asked for


def redis_url_or_skip() -> str:
    redis_url = os.environ.get("FLOW_ENGINE_TEST_REDIS_URL")
    if not redis_url:
        if os.environ.get("FLOW_ENGINE_TEST_REQUIRE_SERVICES"):
            pytest.fail("FLOW_ENGINE_TEST_REQUIRE_SERVICES is set but FLOW_ENGINE_TEST_REDIS_URL is not")
        pytest.skip("set FLOW_ENGINE_TEST_REDIS_URL (e.g. redis://127.0.0.1:6379/9) to run it")
    return redis_url


CALLER = """
import asyncio, sys
from flow_engine import configure
from flow_engine.plugin import complete

base_url, api_key, rule, model, count, redis_url = sys.argv[1:]
configure(database_url="memory://", api_base=base_url, api_key=api_key, rate_limits=rule,
          rate_limits_redis=redis_url or None, max_retries=0)
asyncio.run(complete([{"role": "user", "content": "warm"}], model="openai/gpt-4o-mini"))
sys.stdout.write("ready\\n"); sys.stdout.flush(); sys.stdin.readline()

async def main():
    await asyncio.gather(*(complete([{"role": "user", "content": "hi"}], model=model)
                           for _ in range(int(count))))

asyncio.run(main())
"""


def run_callers(
    fake_openai: Any, tmp_path: Any, callers: list[tuple[str, str, int, str]], timeout: float
) -> None:
    """Processes that each make ``count`` concurrent calls of ``model`` under ``rule`` (limits in
    memory, or shared through ``redis_url``), started together once all have imported everything."""
    script = tmp_path / "caller.py"
    script.write_text(CALLER, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOW_ENGINE_")}
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    processes = [
        subprocess.Popen(
            [sys.executable, str(script), fake_openai.base_url, API_KEY, rule, model, str(count), redis_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for rule, model, count, redis_url in callers
    ]
    try:
        for process in processes:
            assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        for process in processes:
            assert process.wait(timeout=timeout) == 0
    finally:
        for process in processes:
            process.kill()


def received(fake_openai: Any, model: str) -> list[float]:
    return sorted(
        r.received_at for r in fake_openai.chat_requests if r.body.get("model") == model.split("/")[1]
    )


@pytest.mark.slow
def test_the_limit_holds_across_two_processes_sharing_redis(fake_openai, tmp_path):
    redis_url = redis_url_or_skip()
    model = unique_model()
    rule = f"{model}=8rps"
    run_callers(fake_openai, tmp_path, [(rule, model, 16, redis_url), (rule, model, 17, redis_url)], 60)
    times = received(fake_openai, model)
    assert len(times) == 33
    assert_rate_held(times, 8)  # one budget of 8 per second for both processes: 33 take 4 s


@pytest.mark.slow
def test_a_per_minute_limit_holds_over_a_minute_in_one_process_and_across_two_sharing_redis(
    fake_openai, tmp_path
):
    """20 requests a minute, 30 asked for at once: 20 go, the other 10 only when the first ones are a
    minute old (within 10 %), in one process (limits in memory) and in two sharing Redis, side by side."""
    redis_url = redis_url_or_skip()
    alone, shared = unique_model(), unique_model()
    run_callers(
        fake_openai,
        tmp_path,
        [
            (f"{alone}=20rpm", alone, 30, ""),
            (f"{shared}=20rpm", shared, 15, redis_url),
            (f"{shared}=20rpm", shared, 15, redis_url),
        ],
        timeout=120,
    )
    for model in (alone, shared):
        times = received(fake_openai, model)
        assert len(times) == 30, model
        first = times[0]
        assert times[19] - first < 6, f"the first 20 of {model} were held back"
        assert times[20] - first >= 0.9 * 60, (
            f"{model}: a 21st request {times[20] - first:.1f}s after the first"
        )
        assert times[-1] - first <= 1.1 * 60, (
            f"{model}: the last request {times[-1] - first:.1f}s after the first"
        )
        # the limiter admits a request when it starts; the server sees it a little later (the first
        # batch's sends take ~0.1 s here): no 54 s (a minute, less 10 %) holds more than 20
        busiest = max(sum(1 for u in times[i:] if u - t < 0.9 * 60) for i, t in enumerate(times))
        assert busiest <= 20, f"{model}: {busiest} within 54 s: {[round(t - first, 2) for t in times]}"


def test_a_bad_rule_is_refused_when_the_settings_are_read_naming_it(fake_openai, tmp_path):
    with pytest.raises(ConfigurationError, match=r"invalid setting rate_limits: 'lots'"):
        use_fake_openai(fake_openai.base_url, tmp_path, rate_limits="openai/*=lots")
    assert fake_openai.chat_requests == []


@pytest.mark.slow
async def test_a_call_waiting_for_the_limiter_shows_in_the_progress_output(fake_openai, tmp_path, capsys):
    from flow_engine.cli.progress import ProgressReporter

    model = unique_model()
    use_fake_openai(fake_openai.base_url, tmp_path, rate_limits=f"{model}=1rps")
    progress = ProgressReporter(None)
    progress.waiting_after = progress.waiting_every = 0.3
    name = get_engine().plugins.register(progress, name="test-progress")
    try:
        await asyncio.gather(*(complete(MESSAGES, model=model) for _ in range(3)))
    finally:
        get_engine().plugins.unregister(name)
    shown = capsys.readouterr().err
    assert f"waiting for the rate limit {model}=1rps" in shown


def test_an_unreachable_redis_is_a_configuration_error_naming_it(fake_openai, tmp_path):
    model = unique_model()
    use_fake_openai(
        fake_openai.base_url,
        tmp_path,
        rate_limits=f"{model}=10rps",
        rate_limits_redis="redis://:secret@127.0.0.1:1/0",
        max_retries=0,
    )
    with pytest.raises(ConfigurationError, match="cannot use Redis redis://") as caught:
        asyncio.run(complete(MESSAGES, model=model))
    assert "secret" not in str(caught.value)
    assert fake_openai.chat_requests == []  # nothing was sent unlimited
