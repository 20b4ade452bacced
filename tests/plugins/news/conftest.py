"""A real HTTP server on 127.0.0.1 serving feed fixtures, plus slow, huge, redirecting and failing routes.

Routes:
  /<fixture file>                 the file from fixtures/ (``.html`` as text/html, others as RSS/Atom)
  /delay/<seconds>/<fixture>      the fixture after a pause (cut short when the server stops)
  /huge.xml                       a valid RSS feed of ~600 kB, with Content-Length
  /huge-stream.xml                the same with no Content-Length (the size is only known by reading)
  /gzip-bomb.xml                  ~2 MB of XML sent gzip-compressed to a few kB
  /recent.xml                     items dated relative to now (1 h, 30 h, 10 days ago, and undated)
  /redirect/<n>/<fixture>         n redirects, then the fixture
  /loop                           redirects to itself forever
  /status/<code>                  that HTTP status
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


def rss_document(items: list[tuple[str, str, datetime | None]], title: str = "Generated Feed") -> bytes:
    """A small RSS 2.0 document from (title, link, published) triples."""
    parts = [
        f'<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel><title>{title}</title>'
        "<link>https://generated.example/</link><description>generated</description>"
    ]
    for item_title, link, published in items:
        date = f"<pubDate>{format_datetime(published, usegmt=True)}</pubDate>" if published else ""
        parts.append(
            f"<item><title>{item_title}</title><link>{link}</link>"
            f"<description>{item_title} in detail.</description>{date}</item>"
        )
    parts.append("</channel></rss>")
    return "".join(parts).encode()


def huge_document() -> bytes:
    filler = "harbour news " * 40
    items = "".join(
        f"<item><title>Item {i}</title><link>https://huge.example/{i}</link><description>{filler}</description></item>"
        for i in range(1200)
    )
    return (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>Huge</title>' + items + "</channel></rss>"
    ).encode()


@dataclass
class FeedServer:
    base: str
    stop: threading.Event
    requests: list[dict[str, str]] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"{self.base}/{path.lstrip('/')}"


def _handler(server_state: FeedServer) -> type[BaseHTTPRequestHandler]:
    huge = huge_document()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # keep test output clean
            pass

        def _send(
            self,
            body: bytes,
            content_type: str = "application/rss+xml; charset=utf-8",
            status: int = 200,
            length: bool = True,
            headers: dict[str, str] | None = None,
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if length:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeouts, size limits)
                pass

        def _fixture(self, name: str) -> None:
            path = FIXTURES / name
            if not path.is_file():
                self._send(b"not found", "text/plain", 404)
                return
            kind = (
                "text/html; charset=utf-8" if name.endswith(".html") else "application/rss+xml; charset=utf-8"
            )
            if name == "atom.xml":
                kind = "application/atom+xml"
            self._send(path.read_bytes(), kind)

        def do_GET(self) -> None:
            server_state.requests.append(
                {"path": self.path, "user-agent": self.headers.get("User-Agent", "")}
            )
            parts = [p for p in self.path.split("?")[0].split("/") if p]
            if not parts:
                self._send(b"no", "text/plain", 404)
            elif parts[0] == "delay":
                server_state.stop.wait(float(parts[1]))
                self._fixture(parts[2])
            elif parts[0] == "huge.xml":
                self._send(huge)
            elif parts[0] == "huge-stream.xml":
                self.send_response(200)
                self.send_header("Content-Type", "application/rss+xml")
                self.end_headers()  # HTTP/1.0, no length: the body ends when the connection closes
                try:
                    for start in range(0, len(huge), 16384):
                        self.wfile.write(huge[start : start + 16384])
                except (BrokenPipeError, ConnectionResetError):
                    pass
            elif parts[0] == "gzip-bomb.xml":
                body = (
                    b'<?xml version="1.0"?><rss version="2.0"><channel><title>Bomb</title>' + b" " * 2_000_000
                )
                self._send(gzip.compress(body), headers={"Content-Encoding": "gzip"})
            elif parts[0] == "recent.xml":
                now = datetime.now(UTC)
                self._send(
                    rss_document(
                        [
                            (
                                "Fresh harbour report",
                                "https://recent.example/fresh",
                                now - timedelta(hours=1),
                            ),
                            (
                                "Yesterday harbour report",
                                "https://recent.example/yesterday",
                                now - timedelta(hours=30),
                            ),
                            ("Old harbour report", "https://recent.example/old", now - timedelta(days=10)),
                            ("Undated harbour report", "https://recent.example/undated", None),
                        ],
                        title="Recent",
                    )
                )
            elif parts[0] == "redirect":
                remaining = int(parts[1])
                target = f"/redirect/{remaining - 1}/{parts[2]}" if remaining > 1 else f"/{parts[2]}"
                self._send(b"", "text/plain", 302, headers={"Location": target})
            elif parts[0] == "loop":
                self._send(b"", "text/plain", 302, headers={"Location": "/loop"})
            elif parts[0] == "status":
                self._send(b"nope", "text/plain", int(parts[1]))
            else:
                self._fixture(parts[0])

    return Handler


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    stop = threading.Event()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    httpd.daemon_threads = True
    state = FeedServer(base=f"http://127.0.0.1:{httpd.server_address[1]}", stop=stop)
    httpd.RequestHandlerClass = _handler(state)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        stop.set()
        httpd.shutdown()
        httpd.server_close()
        time.sleep(0.01)
