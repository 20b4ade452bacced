"""Ids of runs, steps and LLM requests: random UUIDs (version 4)."""

from __future__ import annotations

import uuid


def new_id() -> uuid.UUID:
    """A random UUID (version 4, RFC 4122 variant)."""
    return uuid.uuid4()
