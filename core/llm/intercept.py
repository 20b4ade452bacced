"""Two switches read by the one place every LLM call passes (``calls._call_with_retries``).

- ``model_route``: rewrites the model name of every call (``openai/gpt-4o`` -> ``scripted/openai/gpt-4o``),
  so a test's scripted or offline provider answers steps whose class pins a real model;
- ``cassette``: a :class:`~flow_engine.llm.cassette.Cassette` that records every response, or answers
  from its recordings instead of calling litellm.

Both are ``None`` in normal use, so what a call pays for them is two attribute reads. They are
process-wide rather than per engine or per task on purpose: ``flow run --replay`` and a test set them
around a whole run, whatever engines and tasks it makes, and put them back afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .cassette import Cassette

model_route: Callable[[str], str] | None = None
cassette: Cassette | None = None


@contextmanager
def routed(route: Callable[[str], str]) -> Iterator[None]:
    """Every LLM call inside the block goes to ``route(model)`` instead of ``model``."""
    global model_route
    previous = model_route
    model_route = route
    try:
        yield
    finally:
        model_route = previous


@contextmanager
def using_cassette(tape: Cassette) -> Iterator[Cassette]:
    """Every LLM call inside the block is recorded to / replayed from ``tape``."""
    global cassette
    previous = cassette
    cassette = tape
    try:
        yield tape
    finally:
        cassette = previous
