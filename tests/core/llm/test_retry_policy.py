"""The retry policy's pure functions: what is transient, the server's Retry-After, the backoff."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from flow_engine.llm.retry_policy import (
    backoff_delay,
    is_transient,
    retry_after_seconds,
    retry_delay,
    should_retry,
    status_of,
)


class _Headers(dict):
    def get(self, key: str, default: Any = None) -> Any:  # case-insensitive, as httpx's
        return super().get(key.lower(), default)


class _Error(Exception):
    def __init__(self, headers: dict[str, str], status: int | None = None):
        super().__init__("x")
        self.response = type("R", (), {"headers": _Headers({k.lower(): v for k, v in headers.items()})})()
        self.status_code = status


class APIConnectionError(Exception):
    pass


class APITimeoutError(APIConnectionError):
    pass


def test_retry_after_forms():
    assert retry_after_seconds(_Error({"Retry-After": "2"})) == 2
    assert retry_after_seconds(_Error({"retry-after-ms": "250"})) == 0.25
    assert retry_after_seconds(_Error({"retry-after-ms": "x", "Retry-After": "3"})) == 3
    assert retry_after_seconds(_Error({"Retry-After": "-5"})) == 0
    assert retry_after_seconds(_Error({})) is None
    assert retry_after_seconds(_Error({"Retry-After": "soon"})) is None
    assert retry_after_seconds(None) is None
    assert retry_after_seconds(ValueError("no response at all")) is None


def test_retry_after_as_an_http_date():
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    later = email.utils.format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert retry_after_seconds(_Error({"Retry-After": later}), now=now) == 30
    earlier = email.utils.format_datetime(now - timedelta(seconds=30), usegmt=True)
    assert retry_after_seconds(_Error({"Retry-After": earlier}), now=now) == 0


def test_retry_after_from_litellm_s_own_header_copy():
    error = Exception("rate limited")
    error.litellm_response_headers = {"retry-after": "4"}  # type: ignore[attr-defined]
    assert retry_after_seconds(error) == 4


def test_transient_classification():
    assert is_transient(_Error({}, 429)) and is_transient(_Error({}, 408)) and is_transient(_Error({}, 409))
    assert all(is_transient(_Error({}, status)) for status in range(500, 600))
    assert not is_transient(_Error({}, 400)) and not is_transient(_Error({}, 401))
    assert not is_transient(_Error({}, 499)) and not is_transient(_Error({}, 600))
    assert is_transient(APIConnectionError()) and is_transient(APITimeoutError())  # by class, subclasses too
    assert is_transient(TimeoutError())
    assert not is_transient(ValueError("a bug"))
    # inside an in-process provider, litellm wraps a plain bug as APIConnectionError: not a network issue
    assert not is_transient(APIConnectionError(), in_process=True)
    assert is_transient(TimeoutError(), in_process=True)


def test_backoff_grows_exponentially_with_jitter_and_a_cap():
    for attempt, base in [(1, 0.1), (2, 0.2), (3, 0.4)]:
        delays = [backoff_delay(attempt, 0.1, 10) for _ in range(50)]
        assert all(base / 2 <= d <= base for d in delays)
        assert len(set(delays)) > 1  # jittered
    assert all(0.25 <= backoff_delay(30, 0.1, 0.5) <= 0.5 for _ in range(50))


def test_the_server_s_hint_wins_over_the_backoff_within_the_cap():
    assert retry_delay(_Error({"Retry-After": "2"}, 429), 1, initial=0.01, cap=30) == 2
    assert retry_delay(_Error({"Retry-After": "120"}, 429), 1, initial=0.01, cap=5) == 5
    assert 0.005 <= retry_delay(_Error({}, 503), 1, initial=0.01, cap=5) <= 0.01


@pytest.mark.parametrize(
    ("attempt", "max_retries", "expected"), [(1, 3, True), (3, 3, True), (4, 3, False), (1, 0, False)]
)
def test_retries_stop_after_max_retries(attempt, max_retries, expected):
    assert should_retry(_Error({}, 503), attempt, max_retries, in_process=False) is expected
    assert should_retry(_Error({}, 400), attempt, max_retries, in_process=False) is False


def test_status_of():
    assert status_of(_Error({}, 503)) == 503
    assert status_of(ValueError()) is None
    error = Exception()
    error.status_code = "503"  # type: ignore[attr-defined]
    assert status_of(error) is None
