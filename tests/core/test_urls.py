"""A URL's password never survives ``redact_url``, whatever characters it holds."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from flow_engine.urls import redact_url, url_password

TRICKY_PASSWORDS = ["pw", "p/a:ss", "p?ss", "p#ss", "p@ss", "a/b?c#d@e", "s3cr3t-v@lue/x"]


@pytest.mark.parametrize("password", TRICKY_PASSWORDS)
def test_the_password_sqlalchemy_would_send_is_hidden(password: str) -> None:
    url = f"postgresql+psycopg://me:{password}@db.internal:5432/runs"
    sent = make_url(url).password  # what the driver would get: the secret to hide
    shown = redact_url(url)
    assert shown is not None
    assert sent and str(sent) not in shown.removeprefix("postgresql+psycopg://me:")
    assert password not in shown
    assert shown.startswith("postgresql+psycopg://me:***@")
    assert shown.endswith("db.internal:5432/runs")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql://db/runs?password=hunter2&sslmode=require",
            "postgresql://db/runs?password=***&sslmode=require",
        ),
        ("postgresql://db/runs?user=me&password=hun#ter2", "postgresql://db/runs?user=me&password=***"),
        ("https://user:pw@host:8443/v1?key=abc", "https://user:***@host:8443/v1?key=***"),
        ("redis://:hunter2@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
    ],
)
def test_passwords_in_the_query_and_the_user_part_are_hidden(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://me@db:5432/runs",  # a user, no password
        "postgresql://db:5432/runs",  # a port is not a password
        "sqlite:////data/me@home/runs.db",  # an @ in a path
        "sqlite:///runs.db",
        "memory:",
        "runs.db",
    ],
)
def test_urls_without_a_secret_are_shown_as_they_are(url: str) -> None:
    assert redact_url(url) == url


def test_nothing_is_nothing() -> None:
    assert redact_url(None) is None
    assert redact_url("") == ""


@pytest.mark.parametrize("password", TRICKY_PASSWORDS)
def test_url_password_finds_what_redact_url_hides(password: str) -> None:
    assert url_password(f"postgresql://me:{password}@db/runs") == password
    assert url_password("postgresql://me@db/runs") is None
    assert url_password("postgresql://db:5432/runs") is None


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://db.internal:5432/runs?application_name=flow@host",  # a port, then an @
        "https://api.example.com:443/v1/users/me@x.com",
        "postgresql://[::1]:5432/db?x=a@b",  # an IPv6 host
    ],
)
def test_an_at_sign_after_a_port_is_not_a_password(url: str) -> None:
    assert redact_url(url) == url
    assert url_password(url) is None


def test_the_password_ends_where_the_host_begins_not_at_a_later_at_sign() -> None:
    url = "https://u:hunter22xyz@host/v1?tag=a@b"
    assert url_password(url) == "hunter22xyz"
    assert redact_url(url) == "https://u:***@host/v1?tag=a@b"
