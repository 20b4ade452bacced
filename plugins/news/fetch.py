"""Getting a document's bytes from ``http(s)://`` or ``file:`` URLs, within limits.

Feeds come from servers we do not control: a slow or endless response, a redirect loop, a 2 GB file or
a gzip bomb must end in a clear per-source error, not a hung or swollen process. So: httpx with a
timeout and capped redirects, a streamed body cut off at ``max_bytes`` (counted after decompression),
and local files read with the same size cap. feedparser never fetches anything itself.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

from .sources import NewsRequest, NewsSourceError

FEED_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+xml;q=0.9, "
    "application/xml;q=0.8, text/xml;q=0.8, */*;q=0.5"
)


@dataclass(frozen=True)
class Document:
    """Fetched bytes, the final URL (after redirects) and the declared content type."""

    data: bytes
    url: str
    content_type: str | None = None


def _too_large(url: str, limit: int) -> NewsSourceError:
    return NewsSourceError(f"{url} is larger than the {limit:,}-byte limit", kind="too_large")


async def fetch_document(url: str, request: NewsRequest, *, accept: str = FEED_ACCEPT) -> Document:
    """Fetch ``url`` (``http``, ``https`` or ``file``) honouring the request's limits."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "file":
        return await asyncio.to_thread(read_file_url, url, request.max_bytes)
    if scheme in ("http", "https"):
        return await fetch_http(url, request, accept=accept)
    raise NewsSourceError(f"cannot fetch {scheme}:// URLs (only http, https and file)", kind="bad_url")


def file_url_path(url: str) -> Path:
    """``file:///abs/path`` (or ``file://localhost/abs``) and ``file:relative/path`` to a Path."""
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise NewsSourceError(
            f"{url}: file URLs take an absolute path with three slashes (file:///home/me/feed.xml) "
            "or a relative one with none (file:feeds/feed.xml)",
            kind="bad_url",
        )
    if not parts.path:
        raise NewsSourceError(f"{url}: no path in the file URL", kind="bad_url")
    return Path(url2pathname(parts.path))


def read_file_url(url: str, max_bytes: int) -> Document:
    path = file_url_path(url)
    try:
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except FileNotFoundError:
        raise NewsSourceError(f"no such file: {path}", kind="not_found") from None
    except IsADirectoryError:
        raise NewsSourceError(f"{path} is a folder, not a feed file", kind="not_found") from None
    except OSError as exc:
        raise NewsSourceError(f"cannot read {path}: {exc.strerror or exc}", kind="io") from None
    if len(data) > max_bytes:
        raise _too_large(url, max_bytes)
    return Document(data, path.resolve().as_uri())


async def fetch_http(url: str, request: NewsRequest, *, accept: str = FEED_ACCEPT) -> Document:
    import httpx

    headers = {"User-Agent": request.user_agent, "Accept": accept}
    try:
        async with (
            httpx.AsyncClient(
                timeout=httpx.Timeout(request.timeout),
                follow_redirects=True,
                max_redirects=request.max_redirects,
                headers=headers,
                trust_env=False,  # no proxies or .netrc credentials picked up behind the user's back
            ) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code >= 400:
                reason = response.reason_phrase or ""
                raise NewsSourceError(
                    f"HTTP {response.status_code} {reason}".strip() + f" from {url}", kind="http"
                )
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > request.max_bytes:
                raise _too_large(url, request.max_bytes)
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > request.max_bytes:
                    raise _too_large(url, request.max_bytes)
                chunks.append(chunk)
            return Document(b"".join(chunks), str(response.url), response.headers.get("content-type"))
    except httpx.TooManyRedirects:
        raise NewsSourceError(
            f"{url} redirected more than {request.max_redirects} times", kind="redirects"
        ) from None
    except httpx.TimeoutException:
        raise NewsSourceError(f"{url} timed out after {request.timeout:g} s", kind="timeout") from None
    except httpx.UnsupportedProtocol as exc:
        raise NewsSourceError(f"{url}: {exc}", kind="bad_url") from None
    except httpx.DecodingError as exc:
        raise NewsSourceError(f"{url} sent a body that cannot be decoded: {exc}", kind="http") from None
    except httpx.TransportError as exc:
        raise NewsSourceError(f"cannot reach {url}: {exc or type(exc).__name__}", kind="connection") from None
