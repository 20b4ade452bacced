"""Keeping secrets out of what is stored and logged: request parameters, URLs and error texts."""

from __future__ import annotations

import os
import re
from typing import Any

from ..urls import redact_url  # the one way a URL is shown: password hidden

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


__all__ = ["is_secret_name", "known_secrets", "redact_params", "redact_text", "redact_url"]


def known_secrets(*values: Any) -> list[str]:
    """The given secret values plus those of environment variables named like keys (``*_API_KEY``...)."""
    found = [v for v in values if isinstance(v, str) and len(v) >= 4]
    found += [v for k, v in os.environ.items() if _SECRET_ENV.search(k) and len(v) >= 8]
    return sorted(set(found), key=len, reverse=True)


def redact_text(text: str, secrets: list[str] | None = None) -> str:
    """Replace the known secret values, bearer tokens and ``sk-...``-like keys in a text with ``***``."""
    for secret in secrets or []:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    for pattern in _SECRET_TEXT:
        text = pattern.sub(lambda m: (m.group(1) if m.re.groups else "") + "***", text)
    return text
