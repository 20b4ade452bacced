"""One LLM call = one or more attempts through litellm, each recorded in ``llm_requests``.

Retries of transient failures (429, 5xx, timeouts, connection errors) live here and only here: the
openai SDK's own retries are switched off (``max_retries=0``, ``num_retries=0``) so every attempt is
counted, backed off (``retry_policy.py``), logged and stored. Each attempt goes through the
``wrap_llm_call`` hook (``hook.py``), where cassettes, a test's scripted model and tracing plug in.
Re-asking after an answer that does not validate is a different thing (``structured.py``).

The retry loop is a plain loop rather than tenacity's ``AsyncRetrying``: set up per call, that costs
~0.18 ms here, more than the engine's whole per-step budget (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from ..context import current_step
from ..engine import Engine, get_engine
from ..errors import FlowEngineError, LLMError, UsageError
from ..ids import new_id
from ..storage import IN_FLIGHT, LLMRequestRecord, utcnow
from . import rate_limits, response_cache
from .failures import EmptyAnswer, classify, is_server_rejection
from .hook import LLMCallInfo, Send, join_scoped_plugins, wrapped
from .loader import ensure_providers, provider_guess, provider_of
from .redact import (
    call_secrets,
    known_secrets,
    redact_api_base,
    redact_params,
    redact_text,
    redacted_chain,
    secrets_in_params,
    secrets_in_url,
)
from .retry_policy import is_transient, retry_after_seconds, retry_delay, should_retry
from .streaming import current_listener, stream_completion

log = logging.getLogger("flow_engine.llm")


class LLMRequestError(LLMError):
    """An LLM request failed for good. ``status_code`` is the HTTP status when there was one."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None,
        transient: bool,
        attempts: int,
        request_id: uuid.UUID | None = None,
        kind: str = "other",
    ):
        super().__init__(message)
        # what happened: http | refused | dns | timeout | connection | empty | credentials | other
        self.kind = kind
        self.status_code = status_code
        self.transient = transient
        self.attempts = attempts
        self.request_id = request_id  # the last attempt's row in llm_requests


@dataclass
class LLMCall:
    """The successful attempt of a call, with what was spent across all its attempts."""

    request_id: uuid.UUID
    model: str
    provider: str
    text: str | None
    response: Any
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: float | None
    latency_ms: int
    attempts: int
    # set by structured output: the ways of asking for JSON that a server rejected before this one
    fallbacks: list[dict[str, Any]] | None = None


async def complete(
    messages: list[dict[str, Any]],
    *,
    model: str,
    api_base: str | None = None,
    retry_server_errors: bool = True,
    **params: Any,
) -> LLMCall:
    """A chat completion with retries; ``params`` go to ``litellm.acompletion`` as they are.

    ``api_base`` defaults to FLOW_ENGINE_API_BASE; the API key to FLOW_ENGINE_API_KEY (else litellm
    reads the provider's own variable, e.g. OPENAI_API_KEY). ``retry_server_errors=False`` gives up at
    once on an error answer other than rate limiting or a gateway/overload status (a structured call
    that can ask another way instead).
    """
    return await _call("completion", model, api_base, messages, None, params, retry_server_errors)


async def generate_image(prompt: str, *, model: str, api_base: str | None = None, **params: Any) -> LLMCall:
    """An image generation with retries through ``litellm.aimage_generation`` (same defaults)."""
    return await _call("image_generation", model, api_base, None, prompt, params)


async def _call(
    kind: str,
    model: str,
    api_base: str | None,
    messages: list[dict[str, Any]] | None,
    prompt: str | None,
    params: dict[str, Any],
    retry_server_errors: bool = True,
) -> LLMCall:
    """Attempts until one succeeds, a failure is not transient, or the retries are spent."""
    engine = get_engine()
    engine.ensure_started()
    settings = engine.settings
    if api_base is not None:
        _check_api_base(api_base)
    join_scoped_plugins(engine)
    scope = current_step.get()
    recorder = AttemptRecorder(engine, kind, messages if prompt is None else _as_messages(prompt), params)
    call_id = new_id()
    model = _bare_provider_name(engine, model)
    cache = response_cache.policy(engine, scope, kind)
    if cache is not None:
        key = response_cache.cache_key(kind, model, messages, prompt, params)
        cached = await _from_cache(engine, key, kind, model, call_id, scope, recorder)
        if cached is not None:
            return cached
    attempt = 0
    started = time.monotonic()
    # litellm's debug log (if someone turns it on) prints the request: SecretFilter blanks these
    with call_secrets(lambda: secrets_of(engine, params, api_base)):
        error: FlowEngineError | None = None  # set when the call failed for good
        cause: BaseException | None = None
        while True:
            attempt += 1
            info = LLMCallInfo(
                kind=kind,
                model=model,
                messages=messages,
                prompt=prompt,
                params=params,
                attempt=attempt,
                call_id=call_id,
                step=scope.step_name if scope is not None else None,
                run_id=scope.run_id if scope is not None else None,
                step_id=scope.step_id if scope is not None else None,
                api_base=api_base if api_base is not None else settings.api_base,
            )
            try:
                call = await _attempt(engine, info, recorder)
                break
            except Exception as exc:
                await _slow_down(engine, info, exc)
                in_process = _target(engine, info).in_process
                failure = classify(exc, info.api_base, settings.request_timeout, in_process=in_process)
                retries = settings.max_retries
                if failure.kind == "timeout":  # a server that did not answer in time rarely will later
                    retries = min(retries, settings.timeout_retries)
                give_up = not retry_server_errors and is_server_rejection(exc)
                if give_up or not should_retry(exc, attempt, retries, in_process=in_process):
                    spent = time.monotonic() - started
                    error = _final_error(
                        engine, info, exc, in_process, recorder.last_request_id, spent, give_up
                    )
                    # the provider's exception may echo a key or header: a redacted copy is chained
                    if isinstance(error, LLMRequestError):
                        cause = redacted_chain(exc, secrets_of(engine, params, api_base))
                    break
                delay = retry_delay(exc, attempt, settings.retry_initial_delay, settings.retry_max_delay)
                log.warning(
                    "%s with model '%s' failed (%s); retry %d/%d in %.2fs",
                    kind,
                    info.model,
                    _first_line(redact_error(engine, params, failure.text, api_base)),
                    attempt,
                    retries,
                    delay,
                )
                await asyncio.sleep(delay)
        if error is not None:
            # raised outside the except block, so that no __context__ keeps the provider's exception
            raise error from cause
    if cache is not None:
        tokens = (call.prompt_tokens, call.completion_tokens)
        # whole, image bytes included (the request log leaves them out: they are saved as files)
        response = _full_json(call.response)
        await response_cache.keep(
            engine, key, cache, kind, call.model, response, call.request_id, tokens, call.cost
        )
    if scope is not None:
        scope.calls.append(call)
    return call


async def _from_cache(
    engine: Engine,
    key: str,
    kind: str,
    model: str,
    call_id: uuid.UUID,
    scope: Any,
    recorder: AttemptRecorder,
) -> LLMCall | None:
    """The call answered from the response cache (recorded as a hit), or None on a miss."""
    hit = await response_cache.lookup(engine, key, kind)
    if hit is None:
        return None
    request_id = call_id  # the call's only row
    record = response_cache.hit_record(
        hit,
        request_id=request_id,
        call_id=call_id,
        kind=kind,
        model=model,
        scope=scope,
        messages=recorder.messages,
        stored_params=recorder.stored_params,
    )
    await engine.store.record_llm_request(record)
    text = None
    if kind == "completion":
        choices = getattr(hit.response, "choices", None) or []
        text = choices[0].message.content if choices else None
    call = LLMCall(
        request_id=request_id,
        model=model,
        provider="cache",
        text=text,
        response=hit.response,
        prompt_tokens=0,
        completion_tokens=0,
        total_tokens=0,
        cost=0.0,
        latency_ms=hit.latency_ms,
        attempts=0,
    )
    _tell_listener(kind, recorder.params, text)
    if scope is not None:
        scope.calls.append(call)
    return call


def _tell_listener(kind: str, params: dict[str, Any], text: str | None) -> None:
    """A streamed call answered from the cache: its listener gets the whole text at once."""
    listener = current_listener() if kind == "completion" else None
    if listener is None or params.get("response_format") is not None or not text:
        return
    listener(text)
    done = getattr(listener, "done", None)
    if done is not None:
        done()


async def _attempt(engine: Engine, info: LLMCallInfo, recorder: AttemptRecorder) -> LLMCall:
    """One attempt through the ``wrap_llm_call`` hook, recorded whatever its outcome."""
    send = wrapped(engine, info, _litellm_send)
    target = _target(engine, info)  # after the wrappers: they may have routed the call elsewhere
    # the first attempt's row is the call's id (one id fewer to draw per call); a retry gets its own
    request_id = info.call_id if info.attempt == 1 else new_id()
    created_at = utcnow()
    await recorder.in_flight(info, target, request_id, created_at)
    started = time.perf_counter()
    try:
        response = await send()
        _check_answer(info, response)
    except BaseException as exc:
        await recorder.failed(info, target, request_id, created_at, started, exc)
        raise
    return await recorder.succeeded(info, target, request_id, created_at, started, response)


@dataclass
class _Target:
    """Where an attempt goes: an in-process provider plugin (offline, scripted) or litellm's network."""

    provider: str
    provider_info: Any  # the in-process provider's ModelProviderInfo; None for a network provider
    litellm: Any

    @property
    def in_process(self) -> bool:
        return self.provider_info is not None


def _target(engine: Engine, info: LLMCallInfo) -> _Target:
    providers = engine.plugins.model_providers()
    litellm = ensure_providers(providers)
    model = info.model
    if "/" in model:
        provider = provider_of(model)
        provider_info = providers.get(provider)
        if provider_info is not None:
            return _Target(provider, provider_info, litellm)
    return _Target(provider_guess(litellm, model, info.api_base), None, litellm)


def _bare_provider_name(engine: Engine, model: str) -> str:
    """``offline`` (an in-process provider's bare name) means ``offline/default``."""
    if "/" not in model and model in engine.plugins.model_providers():
        return f"{model}/default"
    return model


async def _wait_for_rate_limit(engine: Engine, call: LLMCallInfo) -> None:
    """Wait for the call's rate-limit rule, if one applies (``rate_limits.py``)."""
    limiter = rate_limits.limiter_of(engine)
    if limiter is None:
        return
    rule = limiter.rule_for(call.model)
    if rule is None:
        return
    tokens = rate_limits.estimate_tokens(
        call.messages, call.prompt, call.params, engine.settings.max_output_tokens
    )

    def waiting(found: rate_limits.Rule) -> None:
        call.queued_for = found.text

    try:
        call.queue_seconds += await limiter.acquire(rule, tokens, waiting)
    finally:
        call.queued_for = None


async def _slow_down(engine: Engine, info: LLMCallInfo, exc: BaseException) -> None:
    """A 429 with ``Retry-After``: the model's rate-limit rule pauses for everyone sharing it."""
    limiter = rate_limits.limiter_of(engine)
    if limiter is None or getattr(exc, "status_code", None) != 429:
        return
    seconds = retry_after_seconds(exc)
    if seconds:
        await limiter.pause(info.model, seconds)


def _litellm_send(call: LLMCallInfo) -> Send:
    """The engine's own ``Send`` (innermost in the hook): the litellm call."""

    async def send() -> Any:
        engine = get_engine()
        settings = engine.settings
        target = _target(engine, call)
        litellm = target.litellm
        fn = litellm.acompletion if call.kind == "completion" else litellm.aimage_generation
        kwargs: dict[str, Any] = {"model": call.model, **call.request}
        kwargs["max_retries"] = 0  # the openai SDK must not retry behind our back
        if call.kind == "completion":
            kwargs["num_retries"] = 0  # nor litellm's own retry layer
        listener = current_listener() if call.kind == "completion" else None
        if listener is not None and call.params.get("response_format") is None:  # see streaming.py
            inner = fn

            async def fn(**kwargs: Any) -> Any:
                return await stream_completion(inner, kwargs, call.messages, listener)

        await _wait_for_rate_limit(engine, call)
        if target.in_process:  # no server: FLOW_ENGINE_API_BASE/_API_KEY are not for it
            return await _within(settings.request_timeout, fn(**kwargs))
        kwargs.setdefault("timeout", settings.request_timeout)
        if call.api_base:
            kwargs["api_base"] = call.api_base
        if settings.api_key and "api_key" not in kwargs:
            kwargs["api_key"] = settings.api_key
        if settings.llm_processes and listener is None:  # opt-in: litellm's CPU on other cores
            from . import processes

            count, timeout = settings.llm_processes, settings.request_timeout
            try:
                return await processes.call(litellm, call.kind, kwargs, count, timeout)
            except processes.NotPortable as exc:  # made here, as below
                log.debug("%s; calling litellm here", exc)
        # the HTTP client's timeout bounds each read, not the whole answer: a server dripping bytes
        # would keep an attempt alive forever
        return await _within(settings.request_timeout, fn(**kwargs))

    return send


async def _within(seconds: float, answer: Awaitable[Any]) -> Any:
    """``answer`` awaited for at most ``seconds``. The timer is made in an empty context: a timer keeps
    the context it was made in until the event loop drops it, long after it is cancelled (asyncio
    purges cancelled timers in batches), and the step's context holds the step's whole answer."""
    try:
        async with asyncio.timeout(None) as deadline:
            contextvars.Context().run(deadline.reschedule, asyncio.get_running_loop().time() + seconds)
            return await answer
    except TimeoutError as exc:
        raise TimeoutError(f"no answer within {seconds:g} s") from exc


class AttemptRecorder:
    """Writes the ``llm_requests`` row of each attempt of one call (never a key or auth header)."""

    def __init__(
        self, engine: Engine, kind: str, messages: list[dict[str, Any]] | None, params: dict[str, Any]
    ):
        self.engine = engine
        self.kind = kind
        self.messages = messages
        self.params = params
        self.stored_params = redact_params(params)
        if isinstance(self.stored_params.get("response_format"), type):
            self.stored_params["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": self.stored_params["response_format"].__name__},
            }
        self.last_request_id: uuid.UUID | None = None
        self._in_flight: set[uuid.UUID] = set()  # attempts whose row was written before sending

    async def in_flight(
        self, info: LLMCallInfo, target: _Target, request_id: uuid.UUID, created_at: Any
    ) -> None:
        """Write a network attempt's row before it is sent, so that a process killed while waiting for
        the answer still leaves it (``interrupted`` once the run is found crashed). In-process models
        (offline, scripted) answer at once and are written once, when done."""
        store = self.engine.store
        if target.in_process or not store.records_in_flight:
            return
        record = self._record(
            info,
            target,
            request_id,
            created_at,
            provider=target.provider,
            request_params=self.stored_params,
            status=IN_FLIGHT,
        )
        await store.record_llm_request(record)
        self._in_flight.add(request_id)

    async def _write(self, record: LLMRequestRecord) -> None:
        if record.id in self._in_flight:
            self._in_flight.discard(record.id)
            await self.engine.store.finish_llm_request(record)
        else:
            await self.engine.store.record_llm_request(record)

    def _record(
        self, info: LLMCallInfo, target: _Target, request_id: uuid.UUID, created_at: Any, **outcome: Any
    ) -> LLMRequestRecord:
        self.last_request_id = request_id
        return LLMRequestRecord(
            id=request_id,
            flow_run_id=info.run_id,
            step_run_id=info.step_id,
            call_id=info.call_id,
            kind=self.kind,
            model=info.model,
            api_base=None if target.in_process else redact_api_base(info.api_base),
            request_messages=self.messages,
            attempt=info.attempt,
            created_at=created_at,
            **outcome,
        )

    async def failed(
        self,
        info: LLMCallInfo,
        target: _Target,
        request_id: uuid.UUID,
        created_at: Any,
        started: float,
        exc: BaseException,
    ) -> None:
        cancelled = isinstance(exc, asyncio.CancelledError | KeyboardInterrupt)
        timeout = self.engine.settings.request_timeout
        failure = None if cancelled else classify(exc, info.api_base, timeout, in_process=target.in_process)
        status = failure.http_status if failure is not None else None
        prefix = f"{failure.text} — " if failure is not None else ""
        text = f"{prefix}{type(exc).__name__}: {exc}"
        message = redact_error(self.engine, self.params, text, info.api_base)
        record = self._record(
            info,
            target,
            request_id,
            created_at,
            provider=target.provider,
            request_params=self.stored_params,
            latency_ms=_latency_ms(started, info),
            queue_ms=_queue_ms(info),
            status="cancelled" if cancelled else "failed",
            http_status=status,
            error_message=message[:4000],
        )
        try:
            await self._write(record)
        except Exception:  # pragma: no cover - never hide the call's own error behind the log's
            log.exception("could not record a failed LLM request")

    async def succeeded(
        self,
        info: LLMCallInfo,
        target: _Target,
        request_id: uuid.UUID,
        created_at: Any,
        started: float,
        response: Any,
    ) -> LLMCall:
        latency = _latency_ms(started, info)
        prompt, completion, total = _usage(response)
        hidden = getattr(response, "_hidden_params", None) or {}
        if info.replayed_from is not None:  # nothing spent; the row says where the answer came from
            cost: float | None = 0.0
            stored_params = {**self.stored_params, "replayed_from": info.replayed_from}
        else:
            cost = _cost(target, response, hidden, info)
            stored_params = self.stored_params
        record = self._record(
            info,
            target,
            request_id,
            created_at,
            provider=hidden.get("custom_llm_provider") or target.provider,
            request_params=stored_params,
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=total,
            latency_ms=latency,
            queue_ms=_queue_ms(info),
            cost=cost,
            response=_response_json(response),
            http_status=None if target.in_process or info.replayed_from is not None else 200,
        )
        await self._write(record)
        text = None
        if info.kind == "completion":
            choices = getattr(response, "choices", None) or []
            text = choices[0].message.content if choices else None
        return LLMCall(
            request_id=record.id,
            model=info.model,
            provider=record.provider or target.provider,
            text=text,
            response=response,
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=total,
            cost=cost,
            latency_ms=latency,
            attempts=info.attempt,
        )


def _latency_ms(started: float, info: LLMCallInfo) -> int:
    """The attempt's own time: its wait for the rate limiter is recorded apart (``queue_ms``)."""
    return max(0, int((time.perf_counter() - started - info.queue_seconds) * 1000))


def _queue_ms(info: LLMCallInfo) -> int | None:
    return int(info.queue_seconds * 1000) if info.queue_seconds else None


def _check_api_base(api_base: str) -> None:
    from ..config import check_api_base

    try:
        check_api_base(api_base)
    except ValueError as exc:
        raise UsageError(f"api_base {redact_api_base(api_base)} {exc}") from None


def secrets_of(engine: Engine, params: dict[str, Any], api_base: str | None = None) -> list[str]:
    """What a call must never show: the configured key, every secret its parameters carry, and the
    password and query values of its ``api_base`` and of the configured one (a server may echo the
    URL it was sent, ``?key=...`` and all, in its error text)."""
    settings = engine.settings
    in_urls = secrets_in_url(api_base) + secrets_in_url(settings.api_base)
    return known_secrets(settings.api_key, *secrets_in_params(params), *in_urls)


def redact_error(engine: Engine, params: dict[str, Any], text: str, api_base: str | None = None) -> str:
    """An error text with every known secret (the configured key, the key, header values and URL
    password passed in ``params``, the password and query values of ``api_base``) blanked."""
    return redact_text(text, secrets_of(engine, params, api_base))


def _as_messages(prompt: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": prompt}]


def _usage(response: Any) -> tuple[int, int, int]:
    usage = getattr(response, "usage", None)
    if usage is None:
        return 0, 0, 0
    prompt = int(getattr(usage, "prompt_tokens", 0) or getattr(usage, "input_tokens", 0) or 0)
    completion = int(getattr(usage, "completion_tokens", 0) or getattr(usage, "output_tokens", 0) or 0)
    total = int(getattr(usage, "total_tokens", 0) or 0) or prompt + completion
    return prompt, completion, total


def _cost(target: _Target, response: Any, hidden: dict[str, Any], info: LLMCallInfo) -> float | None:
    """litellm's cost, or None when it does not know the model's price (never a silent 0)."""
    if target.provider_info is not None:
        return 0.0 if target.provider_info.free else None
    cost = hidden.get("response_cost")
    if cost is None:
        extra = {k: info.params[k] for k in ("size", "quality", "n") if info.params.get(k) is not None}
        try:
            cost = target.litellm.completion_cost(
                completion_response=response, model=info.model, call_type=info.kind, **extra
            )
        except Exception:
            return None
    return float(cost) if cost is not None else None


def _full_json(response: Any) -> dict[str, Any] | None:
    try:
        data = response.model_dump() if hasattr(response, "model_dump") else dict(response)
    except Exception:
        return None
    return data if isinstance(data, dict) else None


def _response_json(response: Any) -> dict[str, Any] | None:
    try:
        data = response.model_dump() if hasattr(response, "model_dump") else dict(response)
    except Exception:
        return {"repr": repr(response)[:2000]}
    for item in data.get("data") or []:  # image bytes do not belong in the request log
        if isinstance(item, dict) and item.get("b64_json"):
            item["b64_json"] = f"<{len(item['b64_json'])} base64 chars, saved as a file>"
    return data


def _own_error(exc: BaseException, in_process: bool) -> FlowEngineError | None:
    """flow-engine's own error behind a failed attempt, to be raised as it is rather than as a failed
    request: a cassette miss, or an in-process provider (a test's scripted model) refusing on purpose —
    litellm wraps what such a provider raises in an ``APIConnectionError`` whose context is the original."""
    if isinstance(exc, FlowEngineError):
        return exc
    inner = (exc.__cause__ or exc.__context__) if in_process else None
    for _ in range(3):
        if inner is None or isinstance(inner, FlowEngineError):
            return inner
        inner = inner.__cause__ or inner.__context__
    return None


def _check_answer(info: LLMCallInfo, response: Any) -> None:
    """An HTTP 200 without an answer is a failed attempt, never a completed step with ""."""
    if info.kind != "completion":
        return
    choices = getattr(response, "choices", None) or []
    if not choices:
        raise EmptyAnswer("the server answered HTTP 200 with no choices")
    message = getattr(choices[0], "message", None)
    if getattr(message, "content", None) is None and not getattr(message, "tool_calls", None):
        raise EmptyAnswer("the server answered HTTP 200 with no content (content: null)")


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m {rest:02d}s"


def _first_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[0][:500] if lines else ""


def _final_error(
    engine: Engine,
    info: LLMCallInfo,
    exc: Exception,
    in_process: bool,
    request_id: uuid.UUID | None,
    spent: float = 0.0,
    rejected: bool = False,
) -> FlowEngineError:
    """What the caller gets when the call failed for good: flow-engine's own error as it is, else an
    :class:`LLMRequestError` saying what happened (by cause, not by litellm's mapping), how often, how
    long it took, and what to check."""
    own = _own_error(exc, in_process)
    if own is not None:
        return own
    settings = engine.settings
    failure = classify(exc, info.api_base, settings.request_timeout, in_process=in_process)
    transient = is_transient(exc, in_process=in_process) or failure.kind == "empty"
    what = _first_line(redact_error(engine, info.params, failure.text, info.api_base)) or type(exc).__name__
    tried = f"gave up after {info.attempt} attempt(s) in {_duration(spent)}"
    if failure.kind == "timeout":
        hint = (
            f"{tried}; a long answer may need more time: lower the step's output limit (max_output_tokens, "
            "FLOW_ENGINE_MAX_OUTPUT_TOKENS or `flow run --max-output-tokens`) or raise "
            "FLOW_ENGINE_REQUEST_TIMEOUT"
        )
    elif failure.kind == "credentials":
        hint = (
            f"not retried ({tried}): set the provider's API key variable (OPENAI_API_KEY, "
            "ANTHROPIC_API_KEY...) or FLOW_ENGINE_API_KEY"
        )
    elif failure.kind in ("refused", "dns", "connection"):
        hint = f"{tried}; is the server running, and is api_base (FLOW_ENGINE_API_BASE) right?"
    elif rejected:
        hint = f"not retried ({tried}): the server rejected the request"
    elif failure.kind == "empty":
        hint = f"{tried}; the model gave no answer"
    elif transient:
        hint = (
            f"{tried}; the provider may be down or rate-limiting — try again later or raise "
            "FLOW_ENGINE_MAX_RETRIES"
        )
    else:
        hint = f"not retried ({tried}): check the model name, api_base, API key and request"
    where = f" at {redact_api_base(info.api_base)}" if info.api_base and not in_process else ""
    if not in_process and "/" in info.model:  # e.g. offline/x with the offline plugin disabled
        prefix = provider_of(info.model)
        for plugin in getattr(engine.plugins, "statuses", []):
            if plugin.name == prefix and plugin.status != "loaded":
                hint += f"; the '{prefix}' plugin is {plugin.status}, so its models are unavailable"
    return LLMRequestError(
        f"{info.kind} with model '{info.model}'{where} failed ({what}) — {hint}",
        status_code=failure.http_status,
        transient=transient,
        attempts=info.attempt,
        request_id=request_id,
        kind=failure.kind,
    )
