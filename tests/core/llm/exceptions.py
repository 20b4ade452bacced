"""What a raised error carries with it, for tests that look for a secret in every part of it."""

from __future__ import annotations


def exception_chain(exc: BaseException | None) -> list[BaseException]:
    """``exc`` and every exception chained to it (``__cause__`` and an implicit ``__context__``)."""
    found: list[BaseException] = []
    while exc is not None and len(found) < 20:
        found.append(exc)
        if exc.__context__ is not None and exc.__context__ is not exc.__cause__:
            found += exception_chain(exc.__context__)
        exc = exc.__cause__
    return found
