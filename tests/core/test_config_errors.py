"""A setting that does not parse is a ConfigurationError naming it, never a pydantic traceback."""

from __future__ import annotations

import pytest

from flow_engine import configure
from flow_engine.engine import Engine
from flow_engine.errors import ConfigurationError


def test_a_bad_environment_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("FLOW_ENGINE_MAX_RETRIES", "abc")
    with pytest.raises(ConfigurationError, match=r"invalid setting FLOW_ENGINE_MAX_RETRIES: .*integer"):
        _ = Engine().settings


def test_a_bad_configure_value_names_the_argument():
    with pytest.raises(ConfigurationError, match=r"invalid setting request_timeout: .*greater than 0"):
        configure(request_timeout=0)


def test_credentials_in_the_api_base_are_refused_without_repeating_them(monkeypatch):
    monkeypatch.setenv("FLOW_ENGINE_API_BASE", "https://user:s3cr3t-pass@gateway.example/v1")
    with pytest.raises(ConfigurationError) as info:
        _ = Engine().settings
    assert "FLOW_ENGINE_API_BASE: must not contain user:password@" in str(info.value)
    assert "s3cr3t" not in str(info.value)
