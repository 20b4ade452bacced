"""Ages on the command line (``90d``, ``12h``), shared by ``flow runs prune`` and ``flow cache clear``
(and ``FLOW_ENGINE_RETENTION``, which ``flow runs prune`` reads the same way).

An age is at most ``MAX_AGE`` (about 1000 years): more reaches before the first year a date can hold
(an ``OverflowError`` deep in ``datetime``), so it is refused as a usage error naming the value.
"""

from __future__ import annotations

import re
from datetime import timedelta

from flow_engine.errors import UsageError

_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_AGE = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")
MAX_AGE = timedelta(days=365_000)  # ~1000 years: older than any record, far from datetime's limits
MAX_AGE_TEXT = f"{MAX_AGE.days}d"


def parse_age(text: str, what: str = "--older-than") -> timedelta:
    """``90d`` -> 90 days; ``m``inutes, ``h``ours, ``d``ays, ``w``eeks; at most ``MAX_AGE``."""
    found = _AGE.match(text.lower())
    shown = text if len(text) <= 40 else f"{text[:20]}...{text[-10:]}"
    if found is None:
        raise UsageError(f"{what} '{shown}' is not an age such as 90d, 12h, 2w or 30m")
    digits, unit = found.group(1).lstrip("0") or "0", _UNITS[found.group(2)]
    # a number too long for timedelta (or for int(), past 4300 digits) is too long an age anyway
    age = timedelta(**{unit: int(digits)}) if len(digits) <= 8 else None
    if age is None or age > MAX_AGE:
        raise UsageError(f"{what} '{shown}' is too long an age: at most {MAX_AGE_TEXT} (about 1000 years)")
    return age
