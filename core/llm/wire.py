"""The messages between the engine and its LLM worker processes (``processes.py``, ``worker.py``).

Length-prefixed pickles over a local socket: both ends are this package in processes started by the
engine, so nothing untrusted is unpickled. Requests carry litellm's keyword arguments as they are
(an API key travels to the worker, never to a file or log); answers carry the response as plain data
(``model_dump()``) and failures as the facts the retry logic reads: the exception's class names,
message, HTTP status and response headers.
"""

from __future__ import annotations

import asyncio
import pickle
import struct
from typing import Any

_LENGTH = struct.Struct("!I")

CALL = "call"  # (CALL, request id, kind, kwargs): make this litellm call
CANCEL = "cancel"  # (CANCEL, request id): the caller gave up on it
PING = "ping"  # (PING, request id): answered at once with (request id, OK, None, None), if the worker lives
OK = "ok"  # (request id, OK, response data, hidden params)
ERROR = "error"  # (request id, ERROR, error_info(...))


def encode(message: tuple[Any, ...]) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(data)) + data


async def receive(reader: asyncio.StreamReader) -> tuple[Any, ...]:
    """The next message; ``asyncio.IncompleteReadError`` once the other end has gone."""
    (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
    message: tuple[Any, ...] = pickle.loads(await reader.readexactly(length))
    return message


def error_info(exc: BaseException, failure: tuple[str, int | None, str] | None = None) -> dict[str, Any]:
    """What the engine needs of a failed call to classify, retry and report it like a local one.
    ``failure``: what happened, told by the worker from the exception's whole chain (``failures.py``),
    which does not travel: a refused connection, a DNS failure, a real HTTP status."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or getattr(exc, "litellm_response_headers", None)
    status = getattr(exc, "status_code", None)
    try:
        header_dict = {str(k).lower(): str(v) for k, v in dict(headers).items()} if headers else None
    except Exception:  # headers of an odd type: the retry hint is lost, nothing else
        header_dict = None
    return {
        "type": type(exc).__name__,
        "types": [cls.__name__ for cls in type(exc).__mro__],
        "message": str(exc),
        "status_code": status if isinstance(status, int) else None,
        "headers": header_dict,
        "failure": failure,
    }
