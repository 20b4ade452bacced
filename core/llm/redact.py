"""Keeping secrets out of what is stored and logged: request parameters, URLs and error texts."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

_SECRET_KEY = re.compile(r"(api[_-]?key|token|secret|password|authorization|auth|cookie|credential)", re.I)
_HEADER_KEYS = {"headers", "extra_headers", "default_headers"}
_SECRET_TEXT = [
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"\b(sk|pk|rk|sess)-[A-Za-z0-9_-]{8,}"),
    re.compile(r"(?i)((?:api[_-]?key|token|secret|password)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}&]{4,}"),
]


def redact_params(params: dict[str, Any]) -> dict[str, Any]:
    """Drop keys, auth headers and anything named like a secret (recursively)."""
    clean: dict[str, Any] = {}
    for key, value in params.items():
        if key in _HEADER_KEYS or _SECRET_KEY.search(key):
            continue
        if isinstance(value, dict):
            clean[key] = redact_params(value)
        else:
            clean[key] = value
    return clean


def redact_url(url: str | None) -> str | None:
    """Strip user:password and the query string (where tokens often hide) from a URL."""
    if not url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def redact_text(text: str, secrets: list[str] | None = None) -> str:
    for secret in secrets or []:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    for pattern in _SECRET_TEXT:
        text = pattern.sub(lambda m: (m.group(1) if m.re.groups else "") + "***", text)
    return text
