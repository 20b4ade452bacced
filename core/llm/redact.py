"""Keeping secrets out of what is stored and logged: request parameters, URLs and error texts."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any
from urllib.parse import quote, unquote, unquote_plus, urlsplit

from ..urls import is_secret_param, redact_url, url_password  # the one way a URL is shown

# parameter names that hold secrets; "max_tokens" and friends are not secrets
_SECRET_KEY = re.compile(
    r"(?i)(api[_-]?key|secret|password|passwd|credential|authorization|cookie|bearer)"
    r"|(^|[_-])(key|token|auth|access[_-]?key|session[_-]?token)$"
)
_HEADER_KEYS = {"headers", "extra_headers", "default_headers"}
_SECRET_ENV = re.compile(r"(?i)(api[_-]?key|token|secret|password|access[_-]?key)$")
_SECRET_TEXT = [
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"\b(sk|pk|rk|sess)-[A-Za-z0-9_-]{8,}"),
    re.compile(r"(?i)((?:api[_-]?key|token|secret|password)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}&]{4,}"),
]
# a URL in a text (a server echoing the URL it was sent, a library naming it): shown as ``redact_url``
# shows it, its password and the values of its credential-like query parameters (``?key=``) hidden
_URL_IN_TEXT = re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://[^\s\"'<>`]+")
# parameters whose string value is a URL the call goes to: its password and credential query values
# are secrets
_URL_KEYS = {"api_base", "base_url", "azure_endpoint"}


def is_secret_name(name: str) -> bool:
    return name in _HEADER_KEYS or bool(_SECRET_KEY.search(name))


def redact_params(params: dict[str, Any]) -> dict[str, Any]:
    """Drop keys, auth headers and anything named like a secret (recursively)."""
    clean: dict[str, Any] = {}
    for key, value in params.items():
        if is_secret_name(str(key)):
            continue
        if isinstance(value, dict):
            clean[key] = redact_params(value)
        elif isinstance(value, list):
            clean[key] = [redact_params(v) if isinstance(v, dict) else v for v in value]
        else:
            clean[key] = value
    return clean


__all__ = [
    "ProviderError",
    "SecretFilter",
    "call_secrets",
    "is_secret_name",
    "known_secrets",
    "redact_api_base",
    "redact_params",
    "redact_text",
    "redact_url",
    "redacted_chain",
    "secrets_in_params",
    "secrets_in_url",
]


def secrets_in_params(params: dict[str, Any]) -> list[str]:
    """Every secret a call's parameters carry: its API key, the value of EVERY header it sends (a
    server may echo ``Ocp-Apim-Subscription-Key`` or any ``X-...`` header back; no name list can know
    them all), and the password and query values of an ``api_base`` (see :func:`secrets_in_url`)."""
    found: list[str] = []
    for key, value in params.items():
        if key in _HEADER_KEYS and isinstance(value, dict):
            found += [str(v) for v in value.values() if v is not None]
        elif key in _URL_KEYS and isinstance(value, str):
            found += secrets_in_url(value)
        elif is_secret_name(str(key)) and isinstance(value, str):
            found.append(value)
    return found


def secrets_in_url(url: str | None) -> list[str]:
    """The secrets a URL the engine sends requests to carries, to blank wherever they appear: the
    password of ``user:password@`` and the value of a query parameter named like a credential
    (``?key=``, ``?api-key=``, ``?code=``, ``?sig=``) or that looks like one (long, letters and digits
    mixed), each as written, %-decoded and %-encoded (a server may echo either). Not ``?format=json``
    or ``?api-version=2024-10-21``: blanking those everywhere would garble every message (and a
    cassette's JSON); where the URL itself is echoed, :func:`redact_text` hides the rest."""
    if not url:
        return []
    found: list[str] = []
    password = url_password(url)
    if password:
        found += [password, unquote(password)]
    for name, value in _query_items(url):
        if value and (is_secret_param(name) or _looks_like_a_credential(unquote_plus(value))):
            found += [value, unquote(value), unquote_plus(value), quote(unquote_plus(value), safe="")]
    return list(dict.fromkeys(found))


def _looks_like_a_credential(value: str) -> bool:
    """A long random-looking token (a key under a name no pattern knows), not a word, date or number."""
    return len(value) >= 20 and any(c.isdigit() for c in value) and any(c.isalpha() for c in value)


def _query_items(url: str) -> list[tuple[str, str]]:
    """``(name, value)`` of each query parameter as written (a bare ``value``: no name)."""
    try:
        query = urlsplit(url).query
    except ValueError:  # a malformed URL (a bad IPv6 host...): its query read as written
        query = url.partition("?")[2].partition("#")[0]
    items = [item.partition("=") for item in re.split(r"[&;]", query) if item]
    return [(name, value) if sep else ("", name) for name, sep, value in items]


def redact_api_base(url: str | None) -> str | None:
    """An ``api_base`` as shown and stored: :func:`redact_url` with every query value hidden too (a
    query of an API's base URL is rarely anything but a version or a credential: shown safe)."""
    shown = redact_url(url)
    if not shown or "?" not in shown:
        return shown
    base, _, query = shown.partition("?")  # a ``#`` after it is hidden with the value it follows
    items = [item.partition("=") for item in re.split(r"[&;]", query) if item]
    return f"{base}?{'&'.join(f'{name}=***' if sep else '***' for name, sep, _ in items)}"


def known_secrets(*values: Any) -> list[str]:
    """The given secret values plus those of environment variables named like keys (``*_API_KEY``...)."""
    found = [v for v in values if isinstance(v, str) and len(v) >= 4]
    found += [v for k, v in os.environ.items() if _SECRET_ENV.search(k) and len(v) >= 8]
    return sorted(set(found), key=len, reverse=True)


def redact_text(text: str, secrets: list[str] | None = None) -> str:
    """Replace the known secret values, bearer tokens, ``sk-...``-like keys, and the passwords and
    credential-like query values of the URLs in a text with ``***``."""
    for secret in secrets or []:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    for pattern in _SECRET_TEXT:
        text = pattern.sub(lambda m: (m.group(1) if m.re.groups else "") + "***", text)
    if "://" in text:
        text = _URL_IN_TEXT.sub(lambda m: redact_url(m[0]) or m[0], text)
    return text


class ProviderError(Exception):
    """A provider library's exception with its text redacted: what a flow-engine error chains as its
    ``__cause__`` in place of the original, whose message may echo an API key or a header (litellm and
    the openai SDK repeat the server's error body). Its text starts with the original's type."""


def redacted_chain(exc: BaseException, secrets: list[str], depth: int = 0) -> ProviderError:
    """A copy of ``exc`` and of what it was raised from (its ``__cause__``/``__context__`` chain), each
    as a :class:`ProviderError` with secrets blanked and the original traceback kept."""
    kind = type(exc)
    copy = ProviderError(redact_text(f"{kind.__module__}.{kind.__qualname__}: {exc}", secrets))
    copy.__traceback__ = exc.__traceback__
    inner = exc.__cause__
    if inner is None and not exc.__suppress_context__:
        inner = exc.__context__
    if inner is not None and depth < 8:
        copy.__cause__ = redacted_chain(inner, secrets, depth + 1)
    return copy


SecretsOf = Callable[[], list[str]]
_call_secrets: ContextVar[SecretsOf | None] = ContextVar("flow_engine_call_secrets", default=None)


class call_secrets:  # lower case: used as a function, ``with call_secrets(...):``
    """Within the block (one LLM call), :class:`SecretFilter` blanks the values ``secrets()`` gives in
    log records. A function, called only when a record is filtered: reading the environment for key
    values on every call would cost more than the rest of the engine's per-call work. (A class, not a
    generator-based context manager: entered once per LLM call.)"""

    __slots__ = ("secrets", "token")

    def __init__(self, secrets: SecretsOf) -> None:
        self.secrets = secrets

    def __enter__(self) -> None:
        self.token = _call_secrets.set(self.secrets)

    def __exit__(self, *exc_info: object) -> None:
        _call_secrets.reset(self.token)


class SecretFilter(logging.Filter):
    """Blanks the running call's secrets (and key-like texts) in a record of a library's logger. It
    runs only for records that pass the logger's level, so it costs nothing while debug logs are off."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        secrets = _call_secrets.get()
        clean = redact_text(text, secrets() if secrets is not None else known_secrets())
        if clean != text:
            record.msg, record.args = clean, None
        return True
