"""URLs shown to people or stored: the one place a password is hidden from them."""

from __future__ import annotations

import functools
import re

# query parameters that carry credentials (``?password=``, ``?api_key=``, ``?token=``...)
_SECRET_PARAM = re.compile(r"(?i)pass|secret|token|key|auth|credential|signature")


_QUERY_VALUE = re.compile(r"([?&;])([^=&;#]+)=([^&;#]*)")


@functools.lru_cache(maxsize=64)
def _redact(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url  # a path, ``memory:``: nothing to hide
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    netloc, tail = rest[:end], rest[end:]
    userinfo, at, host = netloc.rpartition("@")
    if at:
        user, colon, _password = userinfo.partition(":")
        netloc = f"{user}{':***' if colon else ''}@{host}"
    tail = _QUERY_VALUE.sub(lambda m: f"{m[1]}{m[2]}={'***' if _SECRET_PARAM.search(m[2]) else m[3]}", tail)
    return f"{scheme}://{netloc}{tail}"


def redact_url(url: str | None) -> str | None:
    """``url`` with its password and the values of credential-like query parameters shown as ``***``
    (``postgresql://me:***@host/db``, ``https://host/v1?key=***``): for messages, logs and records."""
    if not url:
        return url
    return _redact(str(url))
