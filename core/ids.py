"""Ids of runs, steps and LLM requests: random UUIDs (version 4).

The random bits come from ``os.urandom`` 128 ids at a time, not one system call per id (``uuid4()``
makes one, and its constructor checks the version it is given again): a step draws two ids between
litellm calls, where each ``uuid4()`` cost ~7.5 µs here against ~4.5 µs this way
(docs/performance.md, run 14). A forked child (a Celery worker) starts with none of its parent's
bits, so the two never hand out the same id.
"""

from __future__ import annotations

import os
import uuid

_BATCH = 128
# RFC 4122 version 4: the version nibble 0100, the variant bits 10
_VERSION_4 = (4 << 76) | (0x8000 << 48)
_NOT_VERSION = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_drawn: list[int] = []  # random bits not handed out yet; list.pop is atomic, so threads share it


def new_id() -> uuid.UUID:
    """A random UUID (version 4, RFC 4122 variant)."""
    try:
        bits = _drawn.pop()
    except IndexError:
        raw = os.urandom(16 * _BATCH)
        _drawn.extend(
            (int.from_bytes(raw[i : i + 16]) & _NOT_VERSION) | _VERSION_4 for i in range(0, len(raw), 16)
        )
        bits = _drawn.pop()
    return uuid.UUID(int=bits)


if hasattr(os, "register_at_fork"):  # no fork, no reset needed (Windows)
    os.register_at_fork(after_in_child=_drawn.clear)
