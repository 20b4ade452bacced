"""Who may use the viewer: a token off loopback, a Host check on it, security headers everywhere."""

from __future__ import annotations

from typing import Any

import pytest

from flow_engine.plugins.ui.security import COOKIE, is_loopback

from .conftest import make_client
from .history import History


@pytest.fixture
def backend() -> str:
    return "sqlite"  # nothing here depends on the database


def test_token_required_on_every_request(history: History) -> None:
    with make_client(token="s3cret-token") as client:
        for url in ("/runs", "/api/runs", f"/runs/{history.ids['done']}", "/static/ui.css", "/flows"):
            response = client.get(url, follow_redirects=False)
            assert response.status_code == 401, url
            assert "Cats" not in response.text
        assert client.get("/api/runs", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/api/runs", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
        # the link with ?token= sets a cookie and drops the token from the address
        response = client.get("/runs?flow=summarize_flow&token=s3cret-token", follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == "/runs?flow=summarize_flow"
        assert (
            "HttpOnly" in response.headers["set-cookie"]
            and "SameSite=Strict" in response.headers["set-cookie"]
        )
        assert client.cookies.get(COOKIE) == "s3cret-token"
        assert client.get("/runs?flow=summarize_flow").status_code == 200
        client.cookies.clear()
        assert client.get("/runs").status_code == 401
        client.cookies.set(COOKIE, "guessed")
        assert client.get("/runs").status_code == 401


def test_without_a_token_only_loopback_host_names_are_served(history: History) -> None:
    with make_client() as client:
        assert client.get("/runs", headers={"host": "localhost:8765"}).status_code == 200
        assert client.get("/runs", headers={"host": "[::1]:8765"}).status_code == 200
        rebound = client.get("/api/runs", headers={"host": "attacker.example:8765"})
        assert rebound.status_code == 421 and "Cats" not in rebound.text


def test_security_headers(client: Any) -> None:
    response = client.get("/runs")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"


def test_loopback_addresses() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "192.168.1.5", "::", "example.com"))


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://me:p/a?s#s@db.internal:5432/runs",
        "postgresql+psycopg://me:p@ss@db.internal:5432/runs",
        "postgresql+psycopg://db.internal:5432/runs?password=hunter2",
    ],
)
def test_the_database_password_is_never_shown(history: History, url: str) -> None:
    from flow_engine.engine import get_engine

    store = get_engine().store
    real_url = store.url  # type: ignore[attr-defined]
    store.url = url  # type: ignore[attr-defined]  # what the header names; the pages still read real_url's
    try:
        with make_client() as client:
            page = client.get("/runs").text
    finally:
        store.url = real_url  # type: ignore[attr-defined]
    assert "db.internal" in page  # the database is named...
    for secret in ("p/a?s#s", "p@ss", "ss@db", "hunter2"):
        assert secret not in page  # ...never its password
