"""The rules of ``FLOW_ENGINE_RATE_LIMITS`` and the URL of ``FLOW_ENGINE_RATE_LIMITS_REDIS``, read and
checked without importing the `limits` library or connecting anywhere.

Pure functions at the settings' layer: ``config.Settings`` validates both variables with them when it
is read, before a run's row is written (a bad value names its variable, nothing is recorded), and
``llm/rate_limits.py`` builds its limiter from what they return.
"""

from __future__ import annotations

import math
import re

_LIMIT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([rt])p([smhd])\s*$", re.IGNORECASE)
_PER = {"s": "second", "m": "minute", "h": "hour", "d": "day"}
# what the `limits` library's Redis storage takes (with ``async+`` in front, added here when missing)
_REDIS_SCHEMES = ("redis", "rediss", "redis+unix")
_REDIS_DEFAULT_PORT = 6379


def check_rate_limits(text: str | None) -> str | None:
    """``FLOW_ENGINE_RATE_LIMITS`` as given, if its rules are well written; else a ``ValueError`` saying
    what is wrong (not naming the variable: for the settings' validator, whose error names it)."""
    rate_limit_rules(text)
    return text


def rate_limit_rules(text: str | None) -> list[tuple[str, str | None, str | None, str]]:
    """The ``(pattern, requests, tokens, as written)`` of each rule of ``FLOW_ENGINE_RATE_LIMITS``
    (``"500/minute"`` limits), or a ``ValueError`` saying what is wrong (not naming the variable)."""
    rules: list[tuple[str, str | None, str | None, str]] = []
    for part in (text or "").split(";"):
        if not part.strip():
            continue
        pattern, sep, limits = part.partition("=")
        if not sep or not pattern.strip():
            raise ValueError(f"'{part.strip()}' is not MODEL_PATTERN=LIMITS (e.g. openai/*=500rpm,200000tpm)")
        requests = tokens = None
        for item in limits.split(","):
            found = _LIMIT.match(item)
            if found is None:
                raise ValueError(
                    f"'{item.strip()}' in '{part.strip()}' is not a limit such as 500rpm, 200000tpm or "
                    "10rps (r: requests, t: tokens; per s, m, h or d)"
                )
            amount = math.floor(float(found.group(1)))
            if amount < 1:
                raise ValueError(f"'{item.strip()}' allows nothing")
            per = f"{amount}/{_PER[found.group(3).lower()]}"
            if found.group(2).lower() == "r":
                requests = per
            else:
                tokens = per
        rules.append((pattern.strip(), requests, tokens, part.strip()))
    return rules


def check_rate_limits_redis(url: str | None) -> str | None:
    """``FLOW_ENGINE_RATE_LIMITS_REDIS`` as given, if it is a Redis URL the limiter can use
    (``redis://host[:port][/db]``, ``rediss://...``, ``unix:///path``; empty: unset); else a
    ``ValueError`` saying what is wrong, the URL shown without its password (not naming the variable:
    for the settings' validator, whose error names it). Nothing is imported or connected to."""
    redis_storage_url(url)
    return url


def redis_storage_url(url: str | None) -> str | None:
    """The `limits` storage URI of a Redis URL (``async+`` in front, the default port filled in: the
    library refuses a host without one), or a ``ValueError`` saying what is wrong with it."""
    from urllib.parse import urlsplit

    from .urls import redact_url

    if not url or not url.strip():  # an empty variable is an unset one
        return None
    shown = f"'{redact_url(url)}'"
    scheme, sep, rest = url.partition("://")
    bare = scheme.lower().removeprefix("async+")
    bare = "redis+unix" if bare == "unix" else bare  # redis-py's name of it
    if not sep or bare not in _REDIS_SCHEMES:
        raise ValueError(
            f"{shown} is not a Redis URL: it must start with redis://, rediss:// or unix:// "
            "(e.g. redis://127.0.0.1:6379/0)"
        )
    try:
        parts = urlsplit(f"{bare}://{rest}")
        port = parts.port
    except ValueError as exc:  # a port that is not a number, a bad IPv6 host
        raise ValueError(f"{shown} is not a valid Redis URL ({exc})") from None
    if bare == "redis+unix":
        if not parts.path.strip("/"):
            raise ValueError(f"{shown} names no socket path (e.g. redis+unix:///run/redis.sock)")
        return f"async+{bare}://{rest}"
    if not parts.hostname:
        raise ValueError(f"{shown} names no host (e.g. redis://127.0.0.1:6379/0)")
    database = parts.path.strip("/")
    if database and not database.isdigit():
        raise ValueError(f"{shown}: the database after the host must be a number (e.g. /0), not '{database}'")
    netloc = parts.netloc if port is not None else f"{parts.netloc}:{_REDIS_DEFAULT_PORT}"
    tail = rest[len(parts.netloc) :]  # the path and query as written
    return f"async+{bare}://{netloc}{tail}"
