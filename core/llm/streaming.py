"""Streaming an LLM answer's text as it is written, to whoever listens.

A listener is a callable taking each piece of text; it is set for a block of code (``listening``),
so it reaches every LLM step called inside, however deep (``flow run --stream`` sets one for the whole
run; ``UnstructuredStep.execute(..., on_text=...)`` and ``UnstructuredStep.stream()`` for one step).
While one is set, a text completion asks litellm for a stream (``stream=True`` with the usage chunk),
hands each piece to the listener, and rebuilds the whole answer from the chunks
(``litellm.stream_chunk_builder``), so the text, tokens and cost recorded are those of a call that was
not streamed. Structured steps do not stream: partial JSON is not useful to read, and their answer is
validated whole; they stay silent while the model writes.

A listener may have a ``done()`` method, called when a streamed answer ends (the CLI ends its line
there). If an attempt fails mid-stream and is retried, the listener sees the new attempt's text from
its start: the text shown so far is not taken back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

TextListener = Callable[[str], Any]

_listener: ContextVar[TextListener | None] = ContextVar("flow_engine_text_listener", default=None)

__all__ = ["TextListener", "current_listener", "listening"]


def current_listener() -> TextListener | None:
    return _listener.get()


@contextmanager
def listening(listener: TextListener | None) -> Iterator[None]:
    """Within the block, LLM text completions stream to ``listener`` (None: no streaming)."""
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)


async def stream_completion(fn: Any, kwargs: dict[str, Any], messages: Any, listener: TextListener) -> Any:
    """``fn(**kwargs)`` (litellm's acompletion) as a stream: each piece of text to ``listener``, then the
    whole response rebuilt from the chunks, usage included."""
    import litellm

    stream = await fn(**kwargs, stream=True, stream_options={"include_usage": True})
    chunks = []
    try:
        async for chunk in stream:
            chunks.append(chunk)
            choices = getattr(chunk, "choices", None) or []
            delta = getattr(choices[0], "delta", None) if choices else None
            text = getattr(delta, "content", None) if delta is not None else None
            if text:
                listener(text)
    finally:
        done = getattr(listener, "done", None)
        if callable(done):
            done()
    response = litellm.stream_chunk_builder(chunks, messages=messages)
    if response is None:
        raise ValueError("the stream ended without any chunk")
    return response
