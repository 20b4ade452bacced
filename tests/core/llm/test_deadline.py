"""The shared-timer timeout around calls to in-process providers: it behaves as ``asyncio.timeout()``."""

from __future__ import annotations

import asyncio
import time

import pytest

from flow_engine.llm import deadline
from flow_engine.llm.deadline import Deadline


async def test_an_overrunning_block_gets_timeout_error_in_time():
    started = time.perf_counter()
    with pytest.raises(TimeoutError, match=r"no answer within 0\.2 s"):
        async with Deadline(0.2):
            await asyncio.sleep(5)
    elapsed = time.perf_counter() - started
    assert 0.2 <= elapsed < 0.2 + 0.2 / 64 + 0.15  # rounded up to its slice at most, plus scheduling
    assert asyncio.current_task().cancelling() == 0  # its cancel request was taken back


async def test_a_block_that_ends_in_time_is_left_alone():
    async with Deadline(0.05):
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)  # past the deadline: nothing is cancelled afterwards
    assert asyncio.current_task().cancelling() == 0


async def test_a_cancellation_from_elsewhere_stays_a_cancellation():
    async def call() -> None:
        async with Deadline(10):
            await asyncio.sleep(5)

    task = asyncio.create_task(call())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_an_outer_timeout_is_not_mistaken_for_this_one():
    with pytest.raises(TimeoutError) as info:
        async with asyncio.timeout(0.05):
            async with Deadline(10):
                await asyncio.sleep(5)
    assert "no answer within" not in str(info.value)  # asyncio's own, not the inner deadline's


async def test_calls_due_in_the_same_slice_share_one_timer(monkeypatch):
    loop = asyncio.get_running_loop()
    scheduled: list[float] = []
    real_call_at = loop.call_at

    def counting_call_at(when, callback, *args, **kwargs):
        scheduled.append(when)
        return real_call_at(when, callback, *args, **kwargs)

    monkeypatch.setattr(loop, "call_at", counting_call_at)
    deadline._timers.pop(loop, None)
    deadline._last[0] = None
    for _ in range(200):
        async with Deadline(600):
            await asyncio.sleep(0)
    assert 1 <= len(scheduled) <= 2  # 200 calls within one 9.4 s slice (two if it began at its edge)


async def test_concurrent_calls_each_time_out_on_their_own():
    async def call(seconds: float) -> str:
        try:
            async with Deadline(seconds):
                await asyncio.sleep(seconds * 3 if seconds < 0.1 else 0.01)
        except TimeoutError:
            return "timed out"
        return "answered"

    results = await asyncio.gather(call(0.05), call(0.5), call(0.05), call(1.0))
    assert results == ["timed out", "answered", "timed out", "answered"]
