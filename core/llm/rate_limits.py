"""Rate limits per model (``FLOW_ENGINE_RATE_LIMITS``), applied to every LLM call of the process.

``openai/*=500rpm,200000tpm;anthropic/*=50rpm``: rules separated by ``;``, the first whose pattern
(``fnmatch``) matches the model applies. Units: requests or tokens per second, minute, hour or day
(``rps rpm rph rpd tps tpm tph tpd``). The `limits` library keeps the moving windows: in this process,
or in Redis when ``FLOW_ENGINE_RATE_LIMITS_REDIS`` names a server, so every process and worker using
that Redis shares one budget per model rule. Tokens are counted before the call from an estimate (the
prompt's characters / 4 plus the answer's ``max_tokens``), since the real count is known only after.

A 429 answer with ``Retry-After`` pauses the rule for everyone sharing it for that long. An attempt's
time waiting here is recorded apart (``llm_requests.queue_ms``); ``latency_ms`` is the call alone.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from ..rate_limit_rules import check_rate_limits as check_rate_limits  # the settings' checks, also here
from ..rate_limit_rules import check_rate_limits_redis as check_rate_limits_redis
from ..rate_limit_rules import rate_limit_rules, redis_storage_url

if TYPE_CHECKING:  # pragma: no cover
    from ..engine import Engine

log = logging.getLogger("flow_engine.llm")

NOTICE_EVERY_S = 10.0  # at most one "waiting for the rate limit" log line per rule this often


@dataclass(frozen=True)
class Rule:
    """One rule: a model pattern and its request and token limits (``"500/minute"`` strings)."""

    pattern: str
    requests: str | None
    tokens: str | None
    text: str  # as written, for messages

    def matches(self, model: str) -> bool:
        return fnmatch.fnmatchcase(model, self.pattern)


RULES_VARIABLE = "FLOW_ENGINE_RATE_LIMITS"
REDIS_VARIABLE = "FLOW_ENGINE_RATE_LIMITS_REDIS"


def parse_rules(text: str | None) -> list[Rule]:
    """The rules of ``FLOW_ENGINE_RATE_LIMITS``; a mistake is a ``ConfigurationError`` naming it."""
    try:
        return [Rule(*rule) for rule in rate_limit_rules(text)]
    except ValueError as exc:
        raise ConfigurationError(f"invalid setting {RULES_VARIABLE}: {exc}") from None


def estimate_tokens(messages: Any, prompt: str | None, params: dict[str, Any], default_output: int) -> int:
    """What a call will cost in tokens, before it is made: prompt characters / 4 plus its answer limit."""
    chars = len(prompt or "")
    for message in messages or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            chars += sum(len(str(part.get("text", ""))) for part in content if isinstance(part, dict))
    answer = params.get("max_tokens") or params.get("max_completion_tokens") or default_output
    return max(1, chars // 4 + int(answer or 0))


class RateLimiter:
    """The limits of one engine: the rules, the `limits` storage (memory or Redis) and strategy."""

    def __init__(self, rules: list[Rule], redis_url: str | None) -> None:
        from limits import parse
        from limits.aio.storage import MemoryStorage, RedisStorage
        from limits.aio.strategies import MovingWindowRateLimiter

        self.rules = rules
        self.redis_url = redis_url
        self.shared = redis_url is not None
        if redis_url is not None:
            try:
                url = redis_storage_url(redis_url) or redis_url
            except ValueError as exc:
                raise _bad_redis_setting(redis_url, str(exc)) from None
            try:
                self.storage: Any = RedisStorage(url, implementation="redispy")
            except Exception as exc:  # the redis package missing, a URL the library refuses
                said = f"the rate limiter cannot use it ({type(exc).__name__}: {exc})"
                if isinstance(exc, ImportError) or "prerequisite" in str(exc):
                    said += "; sharing the rate limits through Redis needs: pip install 'flow-engine[redis]'"
                raise _bad_redis_setting(redis_url, said) from None
        else:
            self.storage = MemoryStorage()
        self.limiter = MovingWindowRateLimiter(self.storage)
        self._items = {
            rule.text: (
                parse(rule.requests) if rule.requests else None,
                parse(rule.tokens) if rule.tokens else None,
            )
            for rule in rules
        }
        self._noticed: dict[str, float] = {}

    def rule_for(self, model: str) -> Rule | None:
        for rule in self.rules:
            if rule.matches(model):
                return rule
        return None

    async def acquire(self, rule: Rule, tokens: int, on_wait: Any = None) -> float:
        """Wait until ``rule`` allows one more request of ``tokens`` tokens; return the seconds waited.
        A limiter that cannot be reached (Redis down) is a ``ConfigurationError`` naming it: the call
        is not sent unlimited, nor retried as if the model's server had failed."""
        try:
            return await self._acquire(rule, tokens, on_wait)
        except (ConfigurationError, asyncio.CancelledError):
            raise
        except Exception as exc:
            raise self._unreachable(exc) from exc

    def _unreachable(self, exc: Exception) -> ConfigurationError:
        from .redact import redact_text, redact_url

        if self.redis_url:
            where = f"Redis {redact_url(self.redis_url)} ({REDIS_VARIABLE})"
        else:
            where = "its storage"
        said = redact_text(f"{type(exc).__name__}: {exc}", _url_secrets(self.redis_url))
        return ConfigurationError(f"the rate limiter ({RULES_VARIABLE}) cannot use {where}: {said}")

    async def _acquire(self, rule: Rule, tokens: int, on_wait: Any) -> float:
        requests_item, tokens_item = self._items[rule.text]
        key = f"flow-engine/{rule.pattern}"
        started = time.monotonic()
        await self._wait_pause(rule, key, started, on_wait)
        if requests_item is not None:
            while not await self.limiter.hit(requests_item, key):
                await self._sleep_until_free(rule, requests_item, key, 1, started, on_wait)
                await self._wait_pause(rule, key, started, on_wait)
        if tokens_item is not None:
            cost = min(tokens, tokens_item.amount)  # one call larger than the whole window still goes
            while not await self.limiter.hit(tokens_item, key, cost=cost):
                await self._sleep_until_free(rule, tokens_item, key, cost, started, on_wait)
        return time.monotonic() - started

    async def _sleep_until_free(
        self, rule: Rule, item: Any, key: str, cost: int, started: float, on_wait: Any
    ) -> None:
        stats = await self.limiter.get_window_stats(item, key)
        delay = min(max(stats.reset_time - time.time(), 0.005), 5.0)
        self._notice(rule, time.monotonic() - started + delay, on_wait)
        await asyncio.sleep(delay)

    async def _wait_pause(self, rule: Rule, key: str, started: float, on_wait: Any) -> None:
        """A 429's ``Retry-After`` pauses the rule (``pause``) for everyone sharing it."""
        pause_key = f"{key}/paused"
        while await self.storage.get(pause_key):
            until = await self.storage.get_expiry(pause_key)
            delay = min(max(until - time.time(), 0.005), 5.0)
            self._notice(rule, time.monotonic() - started + delay, on_wait)
            await asyncio.sleep(delay)

    async def pause(self, model: str, seconds: float) -> None:
        """The server said "slow down" (429 with ``Retry-After``): nobody sends for ``seconds``."""
        rule = self.rule_for(model)
        if rule is None or seconds <= 0:
            return
        pause_key = f"flow-engine/{rule.pattern}/paused"
        try:
            await self.storage.incr(pause_key, max(1, math.ceil(seconds)))
        except Exception as exc:  # the call's own error (the 429) is what the caller must see
            log.warning("%s", self._unreachable(exc))

    def _notice(self, rule: Rule, waited: float, on_wait: Any) -> None:
        if on_wait is not None:
            on_wait(rule)
        now = time.monotonic()
        if waited >= 1.0 and now - self._noticed.get(rule.text, -NOTICE_EVERY_S) >= NOTICE_EVERY_S:
            self._noticed[rule.text] = now
            where = " (shared through Redis)" if self.shared else ""
            log.warning("waiting for the rate limit %s%s", rule.text, where)


def _url_secrets(url: str | None) -> list[str]:
    from .redact import secrets_in_url

    return secrets_in_url(url)


def _bad_redis_setting(url: str, said: str) -> ConfigurationError:
    """A ``FLOW_ENGINE_RATE_LIMITS_REDIS`` the limiter cannot use, named, without its password."""
    from .redact import redact_text

    return ConfigurationError(f"invalid setting {REDIS_VARIABLE}: {redact_text(said, _url_secrets(url))}")


def limiter_of(engine: Engine) -> RateLimiter | None:
    """The engine's limiter, made on first use; None when no rate limit is configured."""
    settings = engine.settings
    text = settings.rate_limits
    if not text:
        return None
    redis_url = (settings.rate_limits_redis or "").strip() or None
    made_from = (text, redis_url)
    cached = engine.rate_limiter
    if cached is not None and cached[0] == made_from:
        limiter: RateLimiter = cached[1]
        return limiter
    limiter = RateLimiter(parse_rules(text), redis_url)
    engine.rate_limiter = (made_from, limiter)
    return limiter
