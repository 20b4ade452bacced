"""What went wrong with one failed LLM attempt, told by what happened rather than by litellm's mapping.

litellm reports a refused connection or an unknown host as ``InternalServerError`` (HTTP 500) and a
timeout as HTTP 408; neither came from a server. :func:`classify` walks the exception chain for the
real cause, so messages and the stored ``http_status`` say what the user can act on.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

_TIMEOUT_NAMES = {"TimeoutError", "APITimeoutError", "TimeoutException", "ReadTimeout", "SocketTimeoutError"}
_CONNECTION_NAMES = {
    "APIConnectionError",
    "ConnectError",
    "ReadError",
    "RemoteProtocolError",
    "ClientOSError",
}
_HTTP_NAMES = {"APIStatusError", "HTTPStatusError"}
# what litellm and the provider SDKs say when no key was given (the openai SDK's "Missing credentials",
# which litellm reports as an HTTP 500; "Missing Gemini API key", as a connection error): no request
# was sent, and another attempt would fail the same way
_NO_KEY = re.compile(
    r"(?i)missing (?:\w+ )?(?:credentials|api[ _-]?key)"
    r"|api_key client option must be set|no (?:api )?key is set"
)


class EmptyAnswer(Exception):
    """An HTTP 200 whose answer holds no text (no choices, or ``content: null``): a failed attempt."""


@dataclass(frozen=True)
class Failure:
    kind: str  # http | refused | dns | timeout | connection | empty | credentials | other
    http_status: int | None  # only when a server really answered with it
    text: str  # what happened, in words

    @property
    def retried_as_timeout(self) -> bool:
        return self.kind == "timeout"


def _chain(exc: BaseException) -> list[BaseException]:
    found: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(found) < 12 and current not in found:
        found.append(current)
        current = current.__cause__ or current.__context__
    return found


def _names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def _host(api_base: str | None) -> str:
    return (urlsplit(api_base).hostname or api_base or "?") if api_base else "the provider's host"


def server_text(exc: BaseException) -> str | None:
    """The error message the server itself sent (OpenAI-style ``{"error": {"message": ...}}``)."""
    for item in _chain(exc):
        body: Any = getattr(item, "body", None)
        if isinstance(body, dict):
            inner = body.get("error", body)
            message = inner.get("message") if isinstance(inner, dict) else inner
            if isinstance(message, str) and message.strip():
                return message.strip()
    return None


def classify(
    exc: BaseException, api_base: str | None, timeout: float, *, in_process: bool = False
) -> Failure:
    """The failure of one attempt: a real HTTP status, a refused connection, a DNS failure, a timeout.
    An in-process provider (offline, scripted) has no network: only a timeout or an empty answer."""
    told = getattr(exc, "failure", None)
    if isinstance(told, Failure):  # a failure in an LLM worker process, classified there (processes.py)
        return told
    chain = _chain(exc)
    if in_process:
        if any(isinstance(i, EmptyAnswer) for i in chain):
            return Failure("empty", None, str(next(i for i in chain if isinstance(i, EmptyAnswer))))
        if any(isinstance(i, TimeoutError) for i in chain):
            return Failure("timeout", None, f"no answer within {timeout:g} s")
        return Failure("other", None, f"{type(exc).__name__}: {exc}")
    where = api_base or "the provider"
    for item in chain:
        if isinstance(item, EmptyAnswer):
            return Failure("empty", None, str(item))
    for item in chain:
        if _NO_KEY.search(str(item)):
            return Failure("credentials", None, _first_line(str(item)))
    for item in chain:
        if isinstance(item, socket.gaierror) or "ClientConnectorDNSError" in _names(item):
            return Failure("dns", None, f"cannot resolve the host '{_host(api_base)}' (DNS failure)")
    for item in chain:
        if isinstance(item, ConnectionRefusedError):
            return Failure("refused", None, f"connection refused at {where}")
    for item in chain:
        if _names(item) & _TIMEOUT_NAMES or type(item).__name__ == "Timeout":
            return Failure("timeout", None, f"no answer within {timeout:g} s")
    for item in chain:
        if _names(item) & _HTTP_NAMES:
            status = getattr(item, "status_code", None)
            if not isinstance(status, int):
                status = getattr(getattr(item, "response", None), "status_code", None)
            text = server_text(exc) or str(item)
            return Failure("http", status if isinstance(status, int) else None, f"HTTP {status}: {text}")
    for item in chain:
        if isinstance(item, ConnectionError) or _names(item) & _CONNECTION_NAMES:
            inner = chain[-1]
            return Failure(
                "connection", None, f"connection to {where} failed ({type(inner).__name__}: {inner})"
            )
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and any("JSONDecodeError" in _names(i) for i in chain):
        return Failure("other", None, f"the answer is not valid JSON ({chain[-1]})")
    if isinstance(status, int):
        return Failure("http", status, f"HTTP {status}: {server_text(exc) or exc}")
    return Failure("other", None, f"{type(exc).__name__}: {exc}")


def _says_no_key(chain: list[BaseException]) -> bool:
    return any(_NO_KEY.search(str(item)) for item in chain)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def missing_credentials(exc: BaseException) -> bool:
    """The call failed before any request for want of an API key (not worth retrying)."""
    told = getattr(exc, "failure", None)
    if isinstance(told, Failure):  # classified in an LLM worker process
        return told.kind == "credentials"
    return _says_no_key(_chain(exc))


def is_server_rejection(exc: BaseException) -> bool:
    """A server answered with an error that is neither rate limiting nor a gateway/overload/timeout status:
    for a native-JSON-schema request, most likely the server does not support the schema."""
    failure = classify(exc, None, 0)
    if failure.kind != "http" or failure.http_status is None:
        return False
    return failure.http_status >= 400 and failure.http_status not in {408, 429, 502, 503, 504}
