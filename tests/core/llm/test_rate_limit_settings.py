"""A bad ``FLOW_ENGINE_RATE_LIMITS`` or ``FLOW_ENGINE_RATE_LIMITS_REDIS`` is an error naming the variable,
raised before a run's row is written (nothing half-recorded), never a traceback of the `limits` library."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from flow_engine import BaseFlow, UnstructuredStep, configure
from flow_engine.engine import get_engine
from flow_engine.errors import ConfigurationError
from flow_engine.llm.rate_limits import (
    RateLimiter,
    check_rate_limits,
    check_rate_limits_redis,
    parse_rules,
)
from flow_engine.plugin import complete

MESSAGES = [{"role": "user", "content": "Say hello"}]
GOOD_RULES = "offline/*=100rps"


class Hello(UnstructuredStep):
    step_name = "hello"
    model = "offline/default"

    class Inputs(BaseModel):
        prompt: str


class HelloFlow(BaseFlow):
    flow_name = "rate_limited_hello"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"text": (await Hello().execute({"prompt": "hi"})).output_content}


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A SQLite file (read again after the failed start), named by the environment like the rest."""
    for name in ("FLOW_ENGINE_RATE_LIMITS", "FLOW_ENGINE_RATE_LIMITS_REDIS"):
        monkeypatch.delenv(name, raising=False)
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    monkeypatch.setenv("FLOW_ENGINE_DATABASE_URL", url)
    monkeypatch.setenv("FLOW_ENGINE_DATA_DIR", str(tmp_path))
    return url


def recorded_runs(monkeypatch: pytest.MonkeyPatch, url: str) -> list[Any]:
    for name in ("FLOW_ENGINE_RATE_LIMITS", "FLOW_ENGINE_RATE_LIMITS_REDIS"):
        monkeypatch.delenv(name, raising=False)
    engine = configure(database_url=url)
    try:
        return list(engine.store.list_runs())
    finally:
        engine.close()


BAD = [
    ("FLOW_ENGINE_RATE_LIMITS", "offline/*=lots", "'lots' in 'offline/*=lots' is not a limit"),
    ("FLOW_ENGINE_RATE_LIMITS", "100rpm", "'100rpm' is not MODEL_PATTERN=LIMITS"),
    ("FLOW_ENGINE_RATE_LIMITS_REDIS", "localhost:6379", "'localhost:6379' is not a Redis URL"),
    ("FLOW_ENGINE_RATE_LIMITS_REDIS", "redis://127.0.0.1:port/0", "is not a valid Redis URL"),
    ("FLOW_ENGINE_RATE_LIMITS_REDIS", "redis://127.0.0.1:6379/zero", "must be a number"),
]


@pytest.mark.parametrize(("variable", "value", "said"), BAD)
def test_a_bad_rate_limit_variable_is_named_when_the_limiter_is_made(
    database, monkeypatch, variable, value, said
):
    """However early it is caught, the error names the variable and says what is wrong with it."""
    monkeypatch.setenv("FLOW_ENGINE_RATE_LIMITS", GOOD_RULES)
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as info:
        configure()
        asyncio.run(complete(MESSAGES, model="offline/default"))
    message = str(info.value)
    assert f"invalid setting {variable}: " in message and said in message
    assert "valkey" not in message and "Traceback" not in message


@pytest.mark.parametrize(("variable", "value", "said"), BAD)
def test_a_bad_rate_limit_variable_fails_before_the_run_is_recorded(
    database, monkeypatch, variable, value, said
):
    monkeypatch.setenv("FLOW_ENGINE_RATE_LIMITS", GOOD_RULES)
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=f"invalid setting {variable}: ") as info:
        configure()
        asyncio.run(HelloFlow().execute({}))
    assert said in str(info.value)
    assert recorded_runs(monkeypatch, database) == []


def test_good_rate_limit_variables_run_and_record_as_before(database, monkeypatch):
    monkeypatch.setenv("FLOW_ENGINE_RATE_LIMITS", GOOD_RULES)
    monkeypatch.setenv("FLOW_ENGINE_RATE_LIMITS_REDIS", "")  # empty: unset, the limits kept in memory
    configure()
    assert asyncio.run(HelloFlow().execute({}))["text"]
    assert get_engine().rate_limiter is not None and not get_engine().rate_limiter[1].shared
    get_engine().close()
    assert [r.status for r in recorded_runs(monkeypatch, database)] == ["completed"]


# -- the checks themselves -------------------------------------------------------------------------------
def test_the_rules_check_says_what_is_wrong_without_the_variable():
    assert (
        check_rate_limits("openai/*=500rpm,200000tpm; local/*=2rps")
        == "openai/*=500rpm,200000tpm; local/*=2rps"
    )
    assert check_rate_limits(None) is None and check_rate_limits("") == ""
    for bad, said in [("openai/*=0rpm", "allows nothing"), ("=5rpm", "MODEL_PATTERN=LIMITS")]:
        with pytest.raises(ValueError, match=said) as info:
            check_rate_limits(bad)
        assert "FLOW_ENGINE" not in str(info.value)
        with pytest.raises(ConfigurationError, match=f"invalid setting FLOW_ENGINE_RATE_LIMITS: .*{said}"):
            parse_rules(bad)


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "redis://127.0.0.1/0",  # the default port
        "rediss://:pw@cache.internal:6380",
        "redis://[::1]:6379",
        "unix:///run/redis.sock",
        "redis+unix:///run/redis.sock",
        "async+redis://127.0.0.1:6379/2",
        "",
        None,
    ],
)
def test_redis_urls_the_limiter_can_use_pass_the_check(url):
    assert check_rate_limits_redis(url) == url


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("localhost:6379", "is not a Redis URL"),
        ("http://127.0.0.1:6379/0", "is not a Redis URL"),
        ("redis://:hunter22@127.0.0.1:six/0", "is not a valid Redis URL"),
        ("redis:///0", "names no host"),
        ("unix://", "names no socket path"),
        ("redis://:hunter22@127.0.0.1:6379/db0", "must be a number"),
    ],
)
def test_bad_redis_urls_are_refused_without_showing_their_password(url, said):
    with pytest.raises(ValueError, match=said) as info:
        check_rate_limits_redis(url)
    assert "hunter22" not in str(info.value) and "FLOW_ENGINE" not in str(info.value)
    with pytest.raises(
        ConfigurationError, match=f"invalid setting FLOW_ENGINE_RATE_LIMITS_REDIS: .*{said}"
    ) as made:
        RateLimiter(parse_rules(GOOD_RULES), url)
    assert "hunter22" not in str(made.value)
