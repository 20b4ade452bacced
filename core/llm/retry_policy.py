"""When to retry a failed LLM attempt and how long to wait first: pure functions, no I/O.

Transient failures (rate limits, every 5xx, timeouts, connection errors; never a missing API key,
whatever status litellm gives it) are retried; the wait is the server's ``Retry-After`` hint when it
gives one (capped), else exponential backoff with jitter. The loop that applies them is ``calls.py``.
"""

from __future__ import annotations

import email.utils
import random
from datetime import UTC, datetime
from typing import Any

from .failures import missing_credentials

# and every 5xx, as the openai SDK and litellm's own retries have it (a 501 or 505 may not go away,
# but a capped retry costs less than failing a run on a proxy's passing error)
TRANSIENT_STATUS = frozenset({408, 409, 425, 429})
TRANSIENT_NAMES = frozenset(
    {
        "Timeout",
        "APITimeoutError",
        "APIConnectionError",
        "ServiceUnavailableError",
        "BadGatewayError",
        "TimeoutError",  # asyncio's, around every attempt
        "EmptyAnswer",  # an HTTP 200 without an answer (failures.py)
    }
)


def is_transient(exc: BaseException, *, in_process: bool = False) -> bool:
    """Worth retrying: rate limits, server errors, timeouts, connection failures.

    litellm wraps any exception raised inside an in-process provider (a bug, a bad request) as a bare
    ``APIConnectionError``; for those providers that is not a network failure and is not retried.
    """
    if in_process and type(exc).__name__ == "APIConnectionError":
        return False
    if missing_credentials(exc):  # litellm reports the openai SDK's missing key as an HTTP 500
        return False
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and (status in TRANSIENT_STATUS or 500 <= status <= 599):
        return True
    return any(cls.__name__ in TRANSIENT_NAMES for cls in type(exc).__mro__)


def retry_after_seconds(exc: BaseException | None, now: datetime | None = None) -> float | None:
    """The server's ``Retry-After`` (seconds or HTTP date) or ``retry-after-ms`` hint, if any."""
    if exc is None:
        return None
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or getattr(exc, "litellm_response_headers", None)
    if not headers:
        return None
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000)
        except (TypeError, ValueError):
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        pass
    try:
        when = email.utils.parsedate_to_datetime(str(value))
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def backoff_delay(attempt: int, initial: float, cap: float) -> float:
    """Exponential backoff with "equal jitter": between half and all of ``initial * 2**(attempt-1)``,
    capped. (Not tenacity's ``wait_exponential_jitter``: it adds up to a whole second of jitter whatever
    the configured delays, which is not what a 10 ms initial delay means.)"""
    base = min(cap, initial * 2 ** max(0, attempt - 1))
    return base / 2 + random.uniform(0, base / 2)


def retry_delay(exc: BaseException, attempt: int, initial: float, cap: float) -> float:
    """How long to wait after failed attempt number ``attempt``: the server's hint (capped), else the
    backoff."""
    hinted = retry_after_seconds(exc)
    if hinted is not None:
        return float(min(hinted, cap))
    return backoff_delay(attempt, initial, cap)


def should_retry(exc: BaseException, attempt: int, max_retries: int, *, in_process: bool) -> bool:
    """Another attempt after failed attempt number ``attempt``, with ``max_retries`` retries allowed?"""
    return attempt <= max_retries and is_transient(exc, in_process=in_process)


def status_of(exc: BaseException) -> int | None:
    """The HTTP status behind a failure, when there was one."""
    status: Any = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None
