"""URLs shown to people or stored: the one place a password is hidden from them."""

from __future__ import annotations

import functools
import re

# query parameters that carry credentials (``?password=``, ``?api_key=``, ``?token=``, Azure Functions'
# ``?code=``, a SAS ``?sig=``...)
_SECRET_PARAM = re.compile(r"(?i)pass|secret|token|key|auth|credential|signature|^sig$|^code$")


def is_secret_param(name: str) -> bool:
    """Whether a query parameter of this name carries a credential (its value is never shown)."""
    return bool(_SECRET_PARAM.search(name))


# a secret's value runs to the next parameter: a ``#`` in it (unencoded) is hidden too
_QUERY_VALUE = re.compile(r"([?&;])([^=&;#]+)=([^&;]*)")

# ``user:`` at the start of what follows ``scheme://``: the URL may have a password. A user name holds
# none of ``: / @ ? #``; a password may hold any of them unencoded (SQLAlchemy and most drivers take
# ``postgresql://me:p/a?s#s@host/db``), so it ends at the first ``@`` after which no ``@`` comes before
# the query. Where that is ambiguous, more is hidden, never less.
_USER_AND_COLON = re.compile(r"[^:/@?#\[]*:")
# what follows ``host:`` when that colon is a port's, not a password's (``db:5432/runs?x=a@b``)
_PORT = re.compile(r"\d*(?:[/?#]|$)")
_QUERY_START = re.compile(r"[?#]")


def _split_password(url: str) -> tuple[str, str, str] | None:
    """``(scheme://user:, password, @rest)`` of a URL with a password, else None."""
    scheme, sep, rest = url.partition("://")
    user = _USER_AND_COLON.match(rest) if sep else None
    if user is None or _PORT.match(rest, user.end()):
        return None
    at = rest.find("@", user.end())
    while at >= 0:
        host_and_path = _QUERY_START.split(rest[at + 1 :], maxsplit=1)[0]
        if "@" not in host_and_path:
            return f"{scheme}://{user[0]}", rest[user.end() : at], rest[at:]
        at = rest.find("@", at + 1)
    return None


def url_password(url: str) -> str | None:
    """The password written in ``url`` (as written: %-escapes not decoded), if any."""
    parts = _split_password(url)
    return parts[1] if parts else None


@functools.lru_cache(maxsize=64)
def _redact(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url  # a path, ``memory:``: nothing to hide
    userinfo = ""
    parts = _split_password(url)
    if parts:
        userinfo, rest = parts[0].removeprefix(f"{scheme}://") + "***@", parts[2][1:]
    rest = _QUERY_VALUE.sub(lambda m: f"{m[1]}{m[2]}={'***' if is_secret_param(m[2]) else m[3]}", rest)
    return f"{scheme}://{userinfo}{rest}"


def redact_url(url: str | None) -> str | None:
    """``url`` with its password and the values of credential-like query parameters shown as ``***``
    (``postgresql://me:***@host/db``, ``https://host/v1?key=***``): for messages, logs and records."""
    if not url:
        return url
    return _redact(str(url))
