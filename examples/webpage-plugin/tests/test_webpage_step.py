"""The ``webpage_text`` step against a local site: what it returns, and every way a fetch must fail."""

from __future__ import annotations

import socket
import time
from importlib.metadata import distribution
from pathlib import Path
from typing import ClassVar

import pytest
from flow_engine_webpage import WebPage, WebPageError, WebPageStep
from flow_engine_webpage.plugin import register_step_types
from webpage_site import HUGE_BYTES, SLOW_SECONDS, Site

from flow_engine import InputValidationError
from flow_engine.engine import get_engine

PAGES = Path(__file__).parent / "pages"


async def fetch(url: str, step: WebPageStep | None = None, **inputs: object) -> WebPage:
    result = await (step or WebPageStep()).execute({"url": url, **inputs})
    assert isinstance(result.output_content, WebPage)
    return result.output_content


async def fetch_error(url: str, step: WebPageStep | None = None, **inputs: object) -> WebPageError:
    with pytest.raises(WebPageError) as caught:
        await (step or WebPageStep()).execute({"url": url, **inputs})
    return caught.value


# -- registration -------------------------------------------------------------------------------
def test_the_step_type_is_registered_through_the_installed_entry_point() -> None:
    dist = distribution("flow-engine-webpage")
    eps = {(ep.group, ep.name): ep.value for ep in dist.entry_points}
    assert eps[("flow_engine", "webpage")] == "flow_engine_webpage.plugin"

    info = get_engine().plugins.step_types()["webpage_text"]
    assert info.step_class is WebPageStep
    assert info.plugin == "webpage"
    assert WebPageStep.step_type == "webpage_text"


def test_the_hook_registers_exactly_one_step_type() -> None:
    registered: list[object] = []
    register_step_types(registered.append)
    assert [(info.name, info.step_class) for info in registered] == [("webpage_text", WebPageStep)]


# -- success ------------------------------------------------------------------------------------
async def test_fetches_an_article(site: Site) -> None:
    result = await WebPageStep().execute({"url": site.url("/article.html"), "max_chars": 5000})
    page = result.output_content

    assert page.url == page.final_url == site.url("/article.html")
    assert page.title == "Tidal Energy Comes of Age | Coastal Gazette"
    assert page.text.startswith("Tidal Energy Comes of Age\n\nBy Mara Quinn")
    assert "42 GWh" in page.text and "Related stories" not in page.text
    assert page.chars == len(page.text) and not page.truncated
    assert result.metadata["final_url"] == page.final_url
    assert result.metadata["http_status"] == 200
    assert result.metadata["bytes"] == len((PAGES / "article.html").read_bytes())
    assert result.metadata["step_type"] == "webpage_text"
    assert result.metadata["llm_calls"] == 0
    assert site.hits == ["/article.html"]


async def test_max_chars_cuts_the_text(site: Site) -> None:
    page = await fetch(site.url("/article.html"), max_chars=120)

    assert page.truncated
    assert page.chars == len(page.text) <= 120
    assert page.text.startswith("Tidal Energy Comes of Age")


async def test_follows_a_short_redirect_chain(site: Site) -> None:
    page = await fetch(site.url("/chain/2"))

    assert page.url == site.url("/chain/2")
    assert page.final_url == site.url("/article.html")
    assert page.title.startswith("Tidal Energy")
    assert site.hits == ["/chain/2", "/chain/1", "/chain/0", "/article.html"]


async def test_reads_gzip_bodies_and_pages_without_a_content_type(site: Site) -> None:
    assert (await fetch(site.url("/gzipped.html"))).title.startswith("Tidal Energy")
    assert (await fetch(site.url("/untyped"))).title.startswith("Tidal Energy")


async def test_uses_the_meta_charset_when_the_header_has_none(site: Site) -> None:
    page = await fetch(site.url("/latin1.html"))
    assert page.title == "Café crème"
    assert page.text == "Naïve résumé – “quoted” for £5."


async def test_reads_a_file_url(tmp_path: Path) -> None:
    local = tmp_path / "saved page.html"
    local.write_bytes((PAGES / "noisy.html").read_bytes())

    page = await fetch(local.as_uri())

    assert page.final_url == local.resolve().as_uri()
    assert page.title == "Sourdough at Altitude"
    assert "Tracking pixel" not in page.text


def test_restore_output_rebuilds_the_model() -> None:
    stored = {"url": "u", "final_url": "f", "title": "t", "text": "x", "chars": 1, "truncated": False}
    assert WebPageStep.restore_output(stored) == WebPage(**stored)


# -- refusals -----------------------------------------------------------------------------------
async def test_non_html_content_is_refused_before_its_body_is_read(site: Site) -> None:
    error = await fetch_error(site.url("/data.json"))
    assert error.kind == "not_html"
    assert "application/json" in str(error) and "not an HTML page" in str(error)

    error = await fetch_error(site.url("/report.pdf"))
    assert error.kind == "not_html" and "application/pdf" in str(error)


async def test_http_errors_name_the_status(site: Site) -> None:
    error = await fetch_error(site.url("/missing.html"))
    assert error.kind == "http"
    assert str(error) == f"HTTP 404 Not Found from {site.url('/missing.html')}"

    error = await fetch_error(site.url("/error.html"))
    assert error.kind == "http" and "HTTP 500" in str(error)


async def test_a_redirect_chain_longer_than_the_cap_is_refused(site: Site) -> None:
    error = await fetch_error(site.url("/chain/8"))

    assert error.kind == "redirects"
    assert "redirected more than 5 times" in str(error)
    assert len(site.hits) == 6  # the first request and five redirects, then it stopped
    assert "/article.html" not in site.hits


async def test_a_redirect_loop_stops_at_the_cap(site: Site) -> None:
    error = await fetch_error(site.url("/loop"))
    assert error.kind == "redirects"
    assert site.hits == ["/loop"] * 6


async def test_the_redirect_cap_is_a_class_attribute(site: Site) -> None:
    class PatientStep(WebPageStep):
        max_redirects: ClassVar[int] = 10

    page = await fetch(site.url("/chain/8"), PatientStep())
    assert page.final_url == site.url("/article.html")


async def test_an_oversized_streamed_page_is_cut_off(site: Site) -> None:
    error = await fetch_error(site.url("/huge.html"))
    assert error.kind == "too_large"
    assert "larger than the 5,000,000-byte limit" in str(error)


async def test_an_oversized_declared_length_is_refused_from_the_headers(site: Site) -> None:
    error = await fetch_error(site.url("/huge-declared.html"))
    assert error.kind == "too_large"
    assert f"declares {HUGE_BYTES:,} bytes" in str(error)


async def test_the_size_limit_counts_decompressed_bytes(site: Site) -> None:
    error = await fetch_error(site.url("/bomb.html"))  # small on the wire, 20 MB inflated
    assert error.kind == "too_large"


async def test_the_size_limit_is_a_class_attribute(site: Site) -> None:
    class TinyStep(WebPageStep):
        max_bytes: ClassVar[int] = 1000

    error = await fetch_error(site.url("/article.html"), TinyStep())
    assert error.kind == "too_large" and "1,000-byte limit" in str(error)


async def test_a_silent_server_times_out(site: Site) -> None:
    started = time.monotonic()
    error = await fetch_error(site.url("/slow.html"), timeout=0.5)

    assert error.kind == "timeout"
    assert time.monotonic() - started < SLOW_SECONDS


async def test_a_trickling_server_hits_the_deadline_for_the_whole_fetch(site: Site) -> None:
    started = time.monotonic()
    error = await fetch_error(site.url("/drip.html"), timeout=1)  # every read is quick; the total is not

    assert error.kind == "timeout"
    assert "took longer than 1 s" in str(error)
    assert time.monotonic() - started < 2.5


async def test_a_closed_port_is_a_connection_error() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    error = await fetch_error(f"http://127.0.0.1:{port}/page.html")
    assert error.kind == "connection" and "cannot reach" in str(error)


async def test_a_page_without_readable_text_fails_the_step(site: Site) -> None:
    error = await fetch_error(site.url("/app.html"))
    assert error.kind == "no_text"
    assert "no readable text" in str(error)

    class LenientStep(WebPageStep):
        require_text: ClassVar[bool] = False

    page = await fetch(site.url("/app.html"), LenientStep())
    assert page.title == "Dashboard" and page.text == "" and page.chars == 0


async def test_file_urls_are_checked_like_downloads(tmp_path: Path) -> None:
    error = await fetch_error((tmp_path / "absent.html").as_uri())
    assert error.kind == "not_found" and "no such file" in str(error)
    error = await fetch_error(tmp_path.as_uri())
    assert error.kind == "not_found" and "not a regular file" in str(error)

    data = tmp_path / "data.csv"
    data.write_text("a,b\n1,2\n")
    error = await fetch_error(data.as_uri())
    assert error.kind == "not_html"

    class NoFilesStep(WebPageStep):
        allow_file_urls: ClassVar[bool] = False

    page = tmp_path / "page.html"
    page.write_text("<p>hello</p>")
    error = await fetch_error(page.as_uri(), NoFilesStep())
    assert error.kind == "bad_url" and "switched off" in str(error)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/page.html", "got a ftp: URL"),
        ("example.com/page.html", "got no scheme"),
        ("http:///page.html", "has no host name"),
        ("javascript:alert(1)", "got a javascript: URL"),
    ],
)
async def test_bad_urls_are_input_errors_naming_the_field(url: str, message: str, site: Site) -> None:
    with pytest.raises(InputValidationError) as caught:
        await WebPageStep().execute({"url": url})
    assert "url:" in str(caught.value) and message in str(caught.value)
    assert site.hits == []


@pytest.mark.parametrize(
    ("inputs", "field"),
    [({"max_chars": 0}, "max_chars"), ({"timeout": -1}, "timeout"), ({"max_char": 10}, "max_char")],
)
async def test_bad_limits_are_input_errors(inputs: dict[str, object], field: str, site: Site) -> None:
    with pytest.raises(InputValidationError) as caught:
        await WebPageStep().execute({"url": site.url("/article.html"), **inputs})
    assert f"{field}:" in str(caught.value)
    assert site.hits == []
