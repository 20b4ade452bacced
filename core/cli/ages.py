"""Ages on the command line (``90d``, ``12h``), shared by ``flow runs prune`` and ``flow cache clear``."""

from __future__ import annotations

import re
from datetime import timedelta

from flow_engine.errors import UsageError

_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_AGE = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")


def parse_age(text: str, what: str = "--older-than") -> timedelta:
    """``90d`` -> 90 days; ``m``inutes, ``h``ours, ``d``ays, ``w``eeks."""
    found = _AGE.match(text.lower())
    if found is None:
        raise UsageError(f"{what} '{text}' is not an age such as 90d, 12h, 2w or 30m")
    return timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})
