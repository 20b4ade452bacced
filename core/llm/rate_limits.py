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
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError

if TYPE_CHECKING:  # pragma: no cover
    from ..engine import Engine

log = logging.getLogger("flow_engine.llm")

_LIMIT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([rt])p([smhd])\s*$", re.IGNORECASE)
_PER = {"s": "second", "m": "minute", "h": "hour", "d": "day"}
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


def parse_rules(text: str | None) -> list[Rule]:
    """The rules of ``FLOW_ENGINE_RATE_LIMITS``; a mistake is a ``ConfigurationError`` naming it."""
    rules: list[Rule] = []
    for part in (text or "").split(";"):
        if not part.strip():
            continue
        pattern, sep, limits = part.partition("=")
        if not sep or not pattern.strip():
            raise ConfigurationError(
                f"FLOW_ENGINE_RATE_LIMITS: '{part.strip()}' is not MODEL_PATTERN=LIMITS "
                "(e.g. openai/*=500rpm,200000tpm)"
            )
        requests = tokens = None
        for item in limits.split(","):
            found = _LIMIT.match(item)
            if found is None:
                raise ConfigurationError(
                    f"FLOW_ENGINE_RATE_LIMITS: '{item.strip()}' in '{part.strip()}' is not a limit such as "
                    "500rpm, 200000tpm or 10rps (r: requests, t: tokens; per s, m, h or d)"
                )
            amount = math.floor(float(found.group(1)))
            if amount < 1:
                raise ConfigurationError(f"FLOW_ENGINE_RATE_LIMITS: '{item.strip()}' allows nothing")
            per = f"{amount}/{_PER[found.group(3).lower()]}"
            if found.group(2).lower() == "r":
                requests = per
            else:
                tokens = per
        rules.append(Rule(pattern.strip(), requests, tokens, part.strip()))
    return rules


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
            url = redis_url if redis_url.startswith("async+") else f"async+{redis_url}"
            self.storage: Any = RedisStorage(url, implementation="redispy")
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
        from .redact import redact_url

        where = f"Redis {redact_url(self.redis_url)}" if self.redis_url else "its storage"
        return ConfigurationError(
            f"the rate limiter (FLOW_ENGINE_RATE_LIMITS) cannot use {where}: {type(exc).__name__}: {exc}"
        )

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


def limiter_of(engine: Engine) -> RateLimiter | None:
    """The engine's limiter, made on first use; None when no rate limit is configured."""
    settings = engine.settings
    text = settings.rate_limits
    if not text:
        return None
    made_from = (text, settings.rate_limits_redis)
    cached = engine.rate_limiter
    if cached is not None and cached[0] == made_from:
        limiter: RateLimiter = cached[1]
        return limiter
    limiter = RateLimiter(parse_rules(text), settings.rate_limits_redis)
    engine.rate_limiter = (made_from, limiter)
    return limiter
