"""Random ids (UUID version 4, as ``uuid.uuid4()`` makes them) without a system call per id.

Every step takes an id and every LLM attempt two; ``uuid.uuid4()`` asks the kernel for 16 bytes
each time, and inside a busy step that system call was the largest single cost of the engine's own
work per step (docs/performance.md). Here the kernel's random bytes are fetched 256 ids at a time;
the ids are as random as ``uuid4()``'s. A forked child throws away its parent's unused bytes, so two
processes never hand out the same id.
"""

from __future__ import annotations

import os
import threading
import uuid

_BATCH = 256
_VERSION_4 = 4 << 76
_VARIANT_RFC_4122 = 0x8000 << 48
_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))


class _RandomBytes:
    """The unused part of the last batch of the kernel's random bytes (shared by this process's threads)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.buffer = b""
        self.offset = 0

    def take16(self) -> bytes:
        with self.lock:
            offset = self.offset
            if offset >= len(self.buffer):
                self.buffer, offset = os.urandom(16 * _BATCH), 0
            self.offset = offset + 16
            return self.buffer[offset : offset + 16]

    def forget(self) -> None:
        """In a forked child: the parent's unused bytes are the parent's (they would repeat its ids)."""
        self.lock = threading.Lock()
        self.buffer, self.offset = b"", 0


_random = _RandomBytes()
# a UUID made as uuid.UUID() makes it at the end of its __init__, without the checks of its arguments
# (the value below is a valid version-4 UUID by construction)
_make_uuid = uuid.UUID.__new__
_set = object.__setattr__
_SAFETY_UNKNOWN = uuid.SafeUUID.unknown
if hasattr(os, "register_at_fork"):  # pragma: no branch - POSIX
    os.register_at_fork(after_in_child=_random.forget)


def new_id() -> uuid.UUID:
    """A random UUID (version 4, RFC 4122 variant), like ``uuid.uuid4()``."""
    value = int.from_bytes(_random.take16(), "big")
    made = _make_uuid(uuid.UUID)
    _set(made, "int", (value & _CLEAR) | _VERSION_4 | _VARIANT_RFC_4122)
    _set(made, "is_safe", _SAFETY_UNKNOWN)
    return made
