"""The local test site: one HTTP server on 127.0.0.1 with a route for every case the step must handle.

Pages come from ``pages/``; the other routes (redirect chains, a loop, oversized and slow bodies, a gzip
bomb, non-HTML types, HTTP errors) are made here. Every slow route ends by itself within a few seconds.
``hits`` records the paths requested, so tests can see that a limit stopped the traffic, not just the
result.
"""

from __future__ import annotations

import gzip
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

PAGES = Path(__file__).parent / "pages"
HUGE_BYTES = 6_000_000  # over WebPageStep.max_bytes (5,000,000)
SLOW_SECONDS = 2.5


class SiteServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a route still sleeping must not hold up the test session's end

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.hits: list[str] = []

    def handle_error(self, request: Any, client_address: Any) -> None:
        """The client hanging up mid-body (size limit, timeout) is expected here, not an error."""
        exc = sys.exc_info()[1]
        if not isinstance(exc, ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: SiteServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def _send(self, status: int, body: bytes, content_type: str | None, **headers: str) -> None:
        self.send_response(status)
        if content_type is not None:
            self.send_header("Content-Type", content_type)
        headers.setdefault("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        self.server.hits.append(path)
        route = ROUTES.get(path)
        if route is not None:
            route(self)
        elif path.startswith("/chain/"):  # /chain/N redirects N times, then lands on the article
            left = int(path.rsplit("/", 1)[1])
            self._redirect(f"/chain/{left - 1}" if left > 0 else "/article.html")
        elif path.endswith(".html") and (PAGES / path.lstrip("/")).is_file():
            self._send(200, (PAGES / path.lstrip("/")).read_bytes(), "text/html; charset=utf-8")
        else:
            self._send(404, b"<html><body><h1>Not found</h1></body></html>", "text/html")


def _latin1(h: _Handler) -> None:  # no charset in the header: the page's <meta charset> must be used
    h._send(200, (PAGES / "latin1.html").read_bytes(), "text/html")


def _untyped(h: _Handler) -> None:
    h._send(200, (PAGES / "article.html").read_bytes(), None)


def _gzipped(h: _Handler) -> None:
    h._send(200, gzip.compress((PAGES / "article.html").read_bytes()), "text/html", Content_Encoding="gzip")


def _gzip_bomb(h: _Handler) -> None:  # about 20 kB on the wire, 20 MB once decompressed
    h._send(200, _BOMB, "text/html", Content_Encoding="gzip")


def _json(h: _Handler) -> None:
    h._send(200, json.dumps({"title": "not a page"}).encode(), "application/json")


def _pdf(h: _Handler) -> None:
    """Oversized and without a Content-Length: only a type check made from the headers says not_html."""
    h.send_response(200)
    h.send_header("Content-Type", "application/pdf")
    h.end_headers()
    h.wfile.write(b"%PDF-1.7\n")
    for _ in range(HUGE_BYTES // 65536 + 1):
        h.wfile.write(b"\x00" * 65536)


def _server_error(h: _Handler) -> None:
    h._send(500, b"<html><body>oops</body></html>", "text/html")


def _loop(h: _Handler) -> None:
    h._redirect("/loop")


def _huge_streamed(h: _Handler) -> None:
    """No Content-Length: the size limit must be enforced while reading, not from the headers."""
    h.send_response(200)
    h.send_header("Content-Type", "text/html")
    h.end_headers()
    h.wfile.write(b"<html><body>")
    chunk = b"<p>" + b"word " * 2000 + b"</p>\n"
    for _ in range(HUGE_BYTES // len(chunk) + 1):
        h.wfile.write(chunk)


def _huge_declared(h: _Handler) -> None:
    h._send(200, b"<html><body>" + b"x" * (HUGE_BYTES - 12), "text/html")


def _slow(h: _Handler) -> None:
    time.sleep(SLOW_SECONDS)
    h._send(200, b"<html><body><p>late</p></body></html>", "text/html")


def _drip(h: _Handler) -> None:
    """A byte trickle: every read arrives well within a read timeout, the whole never finishes in time."""
    h.send_response(200)
    h.send_header("Content-Type", "text/html")
    h.end_headers()
    h.wfile.write(b"<html><body><p>")
    h.wfile.flush()
    for _ in range(30):
        time.sleep(0.1)
        h.wfile.write(b"drip ")
        h.wfile.flush()
    h.wfile.write(b"</p></body></html>")


_BOMB = gzip.compress(b"<html><body><p>" + b" " * 20_000_000 + b"</p></body></html>", compresslevel=9)

ROUTES: dict[str, Callable[[_Handler], None]] = {
    "/latin1.html": _latin1,
    "/untyped": _untyped,
    "/gzipped.html": _gzipped,
    "/bomb.html": _gzip_bomb,
    "/data.json": _json,
    "/report.pdf": _pdf,
    "/error.html": _server_error,
    "/loop": _loop,
    "/huge.html": _huge_streamed,
    "/huge-declared.html": _huge_declared,
    "/slow.html": _slow,
    "/drip.html": _drip,
}


@dataclass
class Site:
    """The running test site: ``url("/article.html")`` and the paths requested so far."""

    server: SiteServer

    @property
    def base(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base + path

    @property
    def hits(self) -> list[str]:
        return self.server.hits
