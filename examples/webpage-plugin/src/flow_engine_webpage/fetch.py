"""Getting an HTML page's bytes from ``http(s)://`` or ``file:`` URLs, within limits.

Pages come from servers nobody here controls: a slow or endless response, a redirect loop, a huge file
or a PDF where HTML was expected must end in one clear ``WebPageError``, never a hung or swollen
process. So: httpx with a per-operation timeout *and* a deadline for the whole fetch (a server dripping
one byte a second never trips a read timeout), capped redirects, the content type checked from the
headers before the body is read, and a streamed body cut off at ``max_bytes`` (counted after
decompression, so a gzip bomb is cut too). Local files get the same size and type checks.
httpx is imported on first fetch, not when flow-engine loads the plugin.
"""

from __future__ import annotations

import asyncio
import mimetypes
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit
from urllib.request import url2pathname

from .models import WebPageError

if TYPE_CHECKING:  # pragma: no cover - httpx loads on first fetch
    import httpx

HTML_TYPES = ("text/html", "application/xhtml+xml")
ACCEPT = "text/html, application/xhtml+xml;q=0.9, */*;q=0.1"


@dataclass(frozen=True)
class FetchLimits:
    """How much one fetch may cost. ``trust_env`` lets httpx read proxy settings and ``.netrc``."""

    timeout: float
    max_bytes: int
    max_redirects: int
    user_agent: str
    trust_env: bool = False
    allow_file_urls: bool = True


@dataclass(frozen=True)
class Fetched:
    """The page's bytes, where redirects ended, its media type and the charset its headers declared."""

    data: bytes
    final_url: str
    media_type: str | None
    charset: str | None = None
    status: int | None = None


async def fetch_page(url: str, limits: FetchLimits) -> Fetched:
    """Fetch an HTML page (``http``, ``https`` or ``file`` URL), honouring ``limits``."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "file":
        if not limits.allow_file_urls:
            raise WebPageError(f"{url}: file:// URLs are switched off for this step", kind="bad_url")
        return await asyncio.to_thread(read_file_url, url, limits.max_bytes)
    if scheme not in ("http", "https"):
        raise WebPageError(
            f"cannot fetch {scheme or 'scheme-less'} URLs (only http, https and file)", "bad_url"
        )
    try:
        async with asyncio.timeout(limits.timeout):
            fetched = await _fetch_http(url, limits)
    except TimeoutError:
        raise WebPageError(f"{url} took longer than {limits.timeout:g} s", kind="timeout") from None
    _check_html(url, fetched)
    return fetched


def media_type_of(content_type: str | None) -> str | None:
    """``text/html; charset=utf-8`` -> ``text/html``; None when absent or empty."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media or None


def looks_like_html(data: bytes) -> bool:
    """For a page without a declared type: does it start like HTML? (Never true for binary junk.)"""
    head = data[:2048].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith((b"<!doctype html", b"<html")):
        return True
    return head.startswith(b"<") and any(tag in head for tag in (b"<head", b"<body", b"<title", b"<p>"))


def _check_html(url: str, fetched: Fetched) -> None:
    if fetched.media_type is None:
        if looks_like_html(fetched.data):
            return
        raise WebPageError(f"{url} declares no content type and does not look like HTML", kind="not_html")
    if fetched.media_type not in HTML_TYPES:
        raise WebPageError(
            f"{url} is not an HTML page (content type {fetched.media_type}); this step reads HTML only",
            kind="not_html",
        )


def _too_large(url: str, limit: int, declared: int | None = None) -> WebPageError:
    if declared is not None:
        return WebPageError(
            f"{url} declares {declared:,} bytes, more than the {limit:,}-byte limit", "too_large"
        )
    return WebPageError(f"{url} is larger than the {limit:,}-byte limit", kind="too_large")


# -- local files --------------------------------------------------------------------------------
def file_url_path(url: str) -> Path:
    """``file:///abs/path`` (or ``file://localhost/abs``) and ``file:relative/path`` to a Path."""
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise WebPageError(
            f"{url}: a file URL takes an absolute path after three slashes (file:///home/me/page.html)",
            kind="bad_url",
        )
    if not parts.path:
        raise WebPageError(f"{url}: no path in the file URL", kind="bad_url")
    return Path(url2pathname(parts.path))


def read_file_url(url: str, max_bytes: int) -> Fetched:
    """A local page, read with the same size limit as a download; its type guessed from its name."""
    path = file_url_path(url)
    if not path.is_file():  # a folder, or a FIFO or device that could block a reader forever
        if not path.exists():
            raise WebPageError(f"no such file: {path}", kind="not_found")
        raise WebPageError(f"{path} is not a regular file", kind="not_found")
    try:
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except FileNotFoundError:
        raise WebPageError(f"no such file: {path}", kind="not_found") from None
    except OSError as exc:
        raise WebPageError(f"cannot read {path}: {exc.strerror or exc}", kind="not_found") from None
    if len(data) > max_bytes:
        raise _too_large(url, max_bytes)
    fetched = Fetched(data, path.resolve().as_uri(), mimetypes.guess_type(path.name)[0])
    _check_html(url, fetched)
    return fetched


# -- http(s) ------------------------------------------------------------------------------------
async def _fetch_http(url: str, limits: FetchLimits) -> Fetched:
    import httpx

    headers = {"User-Agent": limits.user_agent, "Accept": ACCEPT}
    try:
        async with (
            httpx.AsyncClient(
                timeout=httpx.Timeout(limits.timeout),
                follow_redirects=True,
                max_redirects=limits.max_redirects,
                headers=headers,
                trust_env=limits.trust_env,
            ) as client,
            client.stream("GET", url) as response,
        ):
            return await _read_response(url, response, limits)
    except httpx.TooManyRedirects:
        raise WebPageError(
            f"{url} redirected more than {limits.max_redirects} times", kind="redirects"
        ) from None
    except httpx.TimeoutException:
        raise WebPageError(f"{url} timed out after {limits.timeout:g} s", kind="timeout") from None
    except httpx.UnsupportedProtocol as exc:  # e.g. a redirect to ftp://
        raise WebPageError(f"{url}: {exc}", kind="bad_url") from None
    except httpx.DecodingError as exc:
        raise WebPageError(f"{url} sent a body that cannot be decoded: {exc}", kind="http") from None
    except httpx.TransportError as exc:
        raise WebPageError(f"cannot reach {url}: {exc or type(exc).__name__}", kind="connection") from None


async def _read_response(url: str, response: httpx.Response, limits: FetchLimits) -> Fetched:
    """Check status, type and declared size from the headers; then stream the body up to the limit."""
    final_url = str(response.url)
    if response.status_code >= 400:
        reason = f" {response.reason_phrase}" if response.reason_phrase else ""
        where = url if final_url == url else f"{url} (redirected to {final_url})"
        raise WebPageError(f"HTTP {response.status_code}{reason} from {where}", kind="http")
    media = media_type_of(response.headers.get("content-type"))
    if media is not None and media not in HTML_TYPES:  # refuse before downloading a PDF or a video
        _check_html(url, Fetched(b"", final_url, media))
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_bytes:
        raise _too_large(url, limits.max_bytes, int(declared))
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limits.max_bytes:
            raise _too_large(url, limits.max_bytes)
        chunks.append(chunk)
    return Fetched(b"".join(chunks), final_url, media, response.charset_encoding, response.status_code)
