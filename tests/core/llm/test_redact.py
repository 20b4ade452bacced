"""Secrets never reach stored request parameters, URLs or error texts."""

from __future__ import annotations

from flow_engine.llm.redact import (
    is_secret_name,
    known_secrets,
    redact_params,
    redact_text,
    redact_url,
    secrets_in_params,
)


def test_secret_parameters_are_dropped_and_ordinary_ones_kept():
    params = {
        "api_key": "k",
        "apiKey": "k",
        "aws_secret_access_key": "k",
        "aws_session_token": "k",
        "vertex_credentials": "k",
        "extra_headers": {"Authorization": "Bearer x"},
        "max_tokens": 10,
        "max_completion_tokens": 20,
        "temperature": 0.5,
        "metadata": {"token": "t", "user": "u"},
        "tools": [{"name": "f", "password": "p"}],
    }
    assert redact_params(params) == {
        "max_tokens": 10,
        "max_completion_tokens": 20,
        "temperature": 0.5,
        "metadata": {"user": "u"},
        "tools": [{"name": "f"}],
    }
    assert not is_secret_name("top_k") and not is_secret_name("stop")


def test_urls_lose_credentials_and_query():
    assert redact_url("https://user:pw@host:8443/v1?key=abc") == "https://user:***@host:8443/v1?key=***"
    assert redact_url(None) is None


def test_texts_lose_known_secrets_bearer_tokens_and_key_shapes():
    text = "key sk-abcdefghijklmnop failed; Authorization: Bearer abc.def.ghijklmn; api_key=hunter22; mine"
    clean = redact_text(text, ["mine"])
    assert "abcdefghijklmnop" not in clean and "abc.def.ghijklmn" not in clean and "hunter22" not in clean
    assert clean.endswith("***")
    assert "failed" in clean


def test_known_secrets_include_key_like_environment_variables(monkeypatch):
    monkeypatch.setenv("MY_PROVIDER_API_KEY", "env-secret-123456")
    monkeypatch.setenv("SHORT_TOKEN", "abc")
    found = known_secrets("given-key", None)
    assert "given-key" in found and "env-secret-123456" in found and "abc" not in found


def test_a_password_in_api_base_is_a_secret_whatever_it_holds() -> None:
    # a proxy's URL with credentials: its password is scrubbed from error texts like a key
    found = secrets_in_params({"api_base": "https://me:p/a%40ss@proxy.internal/v1", "model": "gpt-4o"})
    assert "p/a%40ss" in found and "p/a@ss" in found
    assert redact_text("proxy said: bad password p/a@ss", found) == "proxy said: bad password ***"
