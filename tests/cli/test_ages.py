"""``parse_age`` (``--older-than`` of ``flow runs prune`` and ``flow cache clear``, FLOW_ENGINE_RETENTION):
the units, and ages too long for a date refused as a usage error naming the value (not an
``OverflowError`` from ``timedelta`` or from ``now - age``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from flow_engine.cli.ages import MAX_AGE, parse_age
from flow_engine.errors import UsageError


@pytest.mark.parametrize(
    ("text", "age"),
    [
        ("90d", timedelta(days=90)),
        ("12h", timedelta(hours=12)),
        (" 2W ", timedelta(weeks=2)),
        ("30m", timedelta(minutes=30)),
        ("0005d", timedelta(days=5)),
    ],
)
def test_ages(text, age):
    assert parse_age(text) == age


def test_the_longest_age_still_makes_a_date():
    assert parse_age(f"{MAX_AGE.days}d") == MAX_AGE
    assert datetime.now(UTC) - parse_age(f"{MAX_AGE.days}d") > datetime.min.replace(tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    ["99999999999d", f"{MAX_AGE.days + 1}d", "999999999w", "99999999w", "999999999999999m", "9" * 5000 + "d"],
)
def test_an_age_too_long_is_a_usage_error_naming_it(text):
    with pytest.raises(UsageError, match=r"too long an age: at most 365000d") as raised:
        parse_age(text, "FLOW_ENGINE_RETENTION")
    shown = str(raised.value)
    assert shown.startswith(f"FLOW_ENGINE_RETENTION '{text[:20]}")
    assert len(shown) < 200  # a 5000-digit age is not repeated in full


def test_not_an_age():
    with pytest.raises(UsageError, match="--older-than '3x' is not an age such as 90d"):
        parse_age("3x")
