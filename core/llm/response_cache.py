"""The response cache: a call asked again with the same model, messages, parameters and output schema
gets the stored answer instead of a request (``docs/caching.md``).

Off by default. On for a step (``cache = True`` on its class), a run (``execute(cache=True)``,
``flow run --cache``) or every call (``FLOW_ENGINE_CACHE=1``); the most specific says, so a step's
``cache = False`` wins over a run's ``--cache``. Image generations are cached only for a step that asks.
The answers live in the store (``llm_cache``), so every process and worker on one database shares them.
A hit is recorded in ``llm_requests`` like any attempt, with cost 0, no tokens spent and
``cached_from`` naming the request that paid. Failed calls are never kept.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ..context import current_run
from ..errors import ConfigurationError
from ..storage import CacheEntry, LLMRequestRecord, utcnow

if TYPE_CHECKING:  # pragma: no cover
    from ..context import StepScope
    from ..engine import Engine

# how a request reaches the server, not what it asks: never part of the key (nor stored)
_TRANSPORT = frozenset(
    {
        "api_key",
        "api_base",
        "base_url",
        "timeout",
        "extra_headers",
        "headers",
        "max_retries",
        "num_retries",
        "metadata",
        "stream",
        "stream_options",
        "retry_server_errors",
    }
)


@dataclass(frozen=True)
class CachePolicy:
    """The cache applies to this call; ``ttl`` seconds (None: kept until cleared)."""

    ttl: float | None


def policy(engine: Engine, scope: StepScope | None, kind: str) -> CachePolicy | None:
    """Whether this call may be answered from (and kept in) the cache."""
    step_says = scope.cache if scope is not None else None
    if step_says is not None:
        wanted = step_says
    elif kind != "completion":  # an image is cached only when its step asks
        return None
    else:
        run = current_run.get()
        run_says = run.cache_wanted() if run is not None else None
        wanted = run_says if run_says is not None else engine.settings.cache
    if not wanted:
        return None
    if not engine.store.has_cache:
        raise ConfigurationError(
            f"the response cache is on, but the store {engine.store.url} keeps no cache; use a SQL or "
            "memory:// store, or turn the cache off"
        )
    return CachePolicy(ttl=engine.settings.cache_ttl or None)


def _schema_of(value: Any) -> Any:
    if isinstance(value, type) and hasattr(value, "model_json_schema"):
        return {"pydantic": value.__name__, "schema": value.model_json_schema()}
    return value


def cache_key(kind: str, model: str, messages: Any, prompt: str | None, params: dict[str, Any]) -> str:
    """SHA-256 of what the call asks: kind, model, messages (or prompt), parameters, output schema."""
    asked = {k: _schema_of(v) for k, v in params.items() if k not in _TRANSPORT and v is not None}
    text = json.dumps(
        {"kind": kind, "model": model, "messages": messages, "prompt": prompt, "params": asked},
        sort_keys=True,
        default=repr,
        ensure_ascii=False,
    )
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Hit:
    """A cached answer: the entry, litellm's response object rebuilt from it, how long finding it took."""

    entry: CacheEntry
    response: Any
    latency_ms: int


async def lookup(engine: Engine, key: str, kind: str) -> Hit | None:
    started = time.perf_counter()
    entry = await engine.store.cache_get(key, utcnow())
    if entry is None:
        return None
    response = _rebuild(engine, kind, entry.response)
    return Hit(entry, response, int((time.perf_counter() - started) * 1000))


def hit_record(
    hit: Hit,
    *,
    request_id: Any,
    call_id: Any,
    kind: str,
    model: str,
    scope: StepScope | None,
    messages: Any,
    stored_params: dict[str, Any] | None,
) -> LLMRequestRecord:
    """The ``llm_requests`` row of a hit: nothing spent, ``cached_from`` the request that paid."""
    return LLMRequestRecord(
        id=request_id,
        flow_run_id=scope.run_id if scope is not None else None,
        step_run_id=scope.step_id if scope is not None else None,
        call_id=call_id,
        kind=kind,
        model=model,
        provider="cache",
        request_messages=messages,
        request_params=stored_params,
        response=hit.entry.response,
        latency_ms=hit.latency_ms,
        cost=0.0,
        cached_from=hit.entry.request_id,
    )


async def keep(
    engine: Engine,
    key: str,
    policy: CachePolicy,
    kind: str,
    model: str,
    response: dict[str, Any] | None,
    request_id: Any,
    tokens: tuple[int, int],
    cost: float | None,
) -> None:
    """Store a successful call's answer (``response`` as JSON) under ``key``."""
    if response is None:
        return
    now = utcnow()
    await engine.store.cache_put(
        CacheEntry(
            key=key,
            kind=kind,
            model=model,
            response=response,
            request_id=request_id,
            prompt_tokens=tokens[0],
            completion_tokens=tokens[1],
            cost=cost,
            created_at=now,
            expires_at=now + timedelta(seconds=policy.ttl) if policy.ttl else None,
        )
    )


def _rebuild(engine: Engine, kind: str, data: dict[str, Any]) -> Any:
    """litellm's response object again, from its stored JSON."""
    from .loader import ensure_providers

    litellm = ensure_providers(engine.plugins.model_providers())
    if kind == "completion":
        return litellm.ModelResponse(**data)
    return litellm.ImageResponse(**data)
