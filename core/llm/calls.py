"""One LLM call = one or more attempts through litellm, each recorded in ``llm_requests``.

Retries of transient failures (429, 5xx, timeouts, connection errors) live here and only here: the
openai SDK's own retries are switched off (``max_retries=0``, ``num_retries=0``) so every attempt is
counted, backed off (exponential with jitter, honouring ``Retry-After``), logged and stored.

Retries use tenacity, but only after a first attempt failed transiently: tenacity's per-call machinery
(wrapping every hook as a coroutine, inspecting callables) cost more than the rest of the engine's
per-step overhead together, and the vast majority of calls succeed first time.
Re-asking after an answer that does not validate is a different thing (``structured.py``).
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from ..context import current_step
from ..engine import get_engine
from ..errors import FlowEngineError, LLMError
from ..ids import new_id
from ..storage import LLMRequestRecord, utcnow
from . import intercept, processes
from .deadline import Deadline
from .loader import ensure_providers, provider_guesses, provider_of
from .redact import known_secrets, redact_params, redact_text, redact_url

log = logging.getLogger("flow_engine.llm")

# and every 5xx, as the openai SDK and litellm's own retries have it (a 501 or 505 may not go away,
# but a capped retry costs less than failing a run on a proxy's passing error)
TRANSIENT_STATUS = {408, 409, 425, 429}
TRANSIENT_NAMES = {
    "Timeout",
    "APITimeoutError",
    "APIConnectionError",
    "ServiceUnavailableError",
    "BadGatewayError",
    "TimeoutError",  # asyncio's, around in-process providers
}


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
    ):
        super().__init__(message)
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


def is_transient(exc: BaseException, *, in_process: bool = False) -> bool:
    """Worth retrying: rate limits, server errors, timeouts, connection failures.

    litellm wraps any exception raised inside an in-process provider (a bug, a bad request) as a bare
    ``APIConnectionError``; for those providers that is not a network failure and is not retried.
    """
    names = {cls.__name__ for cls in type(exc).__mro__}
    names.update(getattr(exc, "remote_types", ()))  # a failure in an LLM worker process (processes.py)
    if in_process and type(exc).__name__ == "APIConnectionError":
        return False
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and (status in TRANSIENT_STATUS or 500 <= status <= 599):
        return True
    return bool(names & TRANSIENT_NAMES)


def retry_after_seconds(exc: BaseException | None) -> float | None:
    """The server's ``Retry-After`` (seconds or HTTP date) or ``retry-after-ms`` hint, if any."""
    if exc is None:
        return None
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or getattr(exc, "litellm_response_headers", None)
    if not headers:
        return None
    try:
        millis = headers.get("retry-after-ms")
        if millis is not None:
            return max(0.0, float(millis) / 1000)
    except (TypeError, ValueError):
        pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        pass
    try:
        when = email.utils.parsedate_to_datetime(str(value))
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def backoff_delay(attempt: int, initial: float, cap: float) -> float:
    """Exponential backoff with "equal jitter": between half and all of ``initial * 2**(attempt-1)``,
    capped. (Not tenacity's ``wait_exponential_jitter``: it adds up to a whole second of jitter whatever
    the configured delays, which is not what a 10 ms initial delay means.)"""
    base = min(cap, initial * 2 ** max(0, attempt - 1))
    return base / 2 + random.uniform(0, base / 2)


def retry_delay(exc: BaseException, attempt: int, settings: Any) -> float:
    """How long to wait after failed attempt number ``attempt``: the server's hint, else the backoff."""
    hinted = retry_after_seconds(exc)
    if hinted is not None:  # the server knows best, within our cap
        return float(min(hinted, settings.retry_max_delay))
    return backoff_delay(attempt, settings.retry_initial_delay, settings.retry_max_delay)


def _usage(response: Any) -> tuple[int, int, int]:
    usage = getattr(response, "usage", None)
    if usage is None:
        return 0, 0, 0
    prompt = int(getattr(usage, "prompt_tokens", 0) or getattr(usage, "input_tokens", 0) or 0)
    completion = int(getattr(usage, "completion_tokens", 0) or getattr(usage, "output_tokens", 0) or 0)
    total = int(getattr(usage, "total_tokens", 0) or 0) or prompt + completion
    return prompt, completion, total


def _hidden_params(response: Any) -> dict[str, Any]:
    """litellm's ``_hidden_params`` of a response (read where pydantic keeps private attributes: its
    ``__getattr__`` fallback costs more than the rest of this module's reading of a response)."""
    private = getattr(response, "__pydantic_private__", None)
    hidden = private.get("_hidden_params") if private else getattr(response, "_hidden_params", None)
    return hidden or {}


def _cost(
    litellm: Any, response: Any, provider_info: Any, kind: str, model: str, request: dict[str, Any]
) -> float | None:
    """litellm's cost, or None when it does not know the model's price (never a silent 0)."""
    if provider_info is not None:
        return 0.0 if provider_info.free else None
    cost = _hidden_params(response).get("response_cost")
    if cost is None:
        extra = {k: request[k] for k in ("size", "quality", "n") if request.get(k) is not None}
        try:
            cost = litellm.completion_cost(completion_response=response, model=model, call_type=kind, **extra)
        except Exception:
            return None
    return float(cost) if cost is not None else None


def _response_json(response: Any) -> dict[str, Any] | None:
    try:
        data = response.model_dump() if hasattr(response, "model_dump") else dict(response)
    except Exception:
        return {"repr": repr(response)[:2000]}
    for item in data.get("data") or []:  # image bytes do not belong in the request log
        if isinstance(item, dict) and item.get("b64_json"):
            item["b64_json"] = f"<{len(item['b64_json'])} base64 chars, saved as a file>"
    return data


def _provider_guess(litellm: Any, model: str, api_base: str | None) -> str:
    """litellm's provider name for ``model`` (its lookup walks provider lists: remembered)."""
    known = provider_guesses.get((model, api_base))
    if known is not None:
        return known
    try:
        guess = str(litellm.get_llm_provider(model, api_base=api_base)[1])
    except Exception:
        guess = provider_of(model)
    if len(provider_guesses) < 1024:
        provider_guesses[(model, api_base)] = guess
    return guess


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


class _InFlight:
    """Calls to network providers in flight in this process (``auto`` worker processes count them)."""

    count = 0


_in_flight = _InFlight()


def _worker_count(setting: int | str, litellm: Any) -> int:
    """How many worker processes this call goes to (0: made here), per FLOW_ENGINE_LLM_PROCESSES."""
    if setting == "auto":
        return processes.auto_count() if processes.use_auto(_in_flight.count, litellm) else 0
    return int(setting)


def _step_name(scope: Any) -> str | None:
    return scope.step_name if scope is not None else None


def _first_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[0][:500] if lines else ""


async def _retry_transient(
    attempt: Callable[[], Awaitable[LLMCall]],
    first_error: BaseException,
    settings: Any,
    in_process: bool,
    log_retry: Callable[[BaseException, float], None],
) -> LLMCall:
    """The attempts after a transient failure, through tenacity: backoff (or the server's
    ``Retry-After``) before each, up to ``max_retries`` more, transient failures only."""

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        return retry_delay(exc or first_error, state.attempt_number + 1, settings)

    first_delay = retry_delay(first_error, 1, settings)
    log_retry(first_error, first_delay)
    await asyncio.sleep(first_delay)
    retrying = AsyncRetrying(
        stop=stop_after_attempt(settings.max_retries),
        wait=wait,
        retry=retry_if_exception(lambda exc: is_transient(exc, in_process=in_process)),
        before_sleep=lambda state: log_retry(
            (state.outcome.exception() if state.outcome else None) or first_error, state.upcoming_sleep
        ),
        reraise=True,
    )
    return await retrying(attempt)


async def _call_with_retries(
    kind: str,
    model: str,
    api_base: str | None,
    request: dict[str, Any],
    messages: list[dict[str, Any]] | None,
) -> LLMCall:
    engine = get_engine()
    settings = engine.settings
    if api_base is None:
        api_base = settings.api_base
    route = intercept.model_route  # None unless a test routes every model to its own provider
    if route is not None:
        model = route(model)
    providers = engine.plugins.model_providers()
    if "/" not in model and model in providers:  # "offline" means "offline/default"
        model = f"{model}/default"
    provider_info = providers.get(provider_of(model)) if "/" in model else None
    in_process = provider_info is not None
    if isinstance(settings.llm_processes, int) and settings.llm_processes and not in_process:
        processes.start(settings.llm_processes)  # they import litellm while this process does
    litellm = ensure_providers(providers)
    if in_process:
        api_base = None  # an in-process provider has no server; FLOW_ENGINE_API_BASE is not for it
    provider = provider_of(model) if in_process else _provider_guess(litellm, model, api_base)
    scope = current_step.get()
    store = engine.store
    call_id = new_id()
    tape = intercept.cassette  # None unless recording or replaying (`flow run --record/--replay`)

    def redact(text: str) -> str:  # only failures need it: scanning the environment is not free
        return redact_text(text, known_secrets(settings.api_key, request.get("api_key")))

    call_kwargs: dict[str, Any] = {"model": model, **request}
    if not in_process:
        # an in-process provider gets asyncio's timeout instead: litellm's costs ~7% of such a call
        call_kwargs.setdefault("timeout", settings.request_timeout)
    if api_base:
        call_kwargs["api_base"] = api_base
    if settings.api_key and "api_key" not in call_kwargs and not in_process:
        call_kwargs["api_key"] = settings.api_key
    call_kwargs["max_retries"] = 0  # the openai SDK must not retry behind our back
    if kind == "completion":
        call_kwargs["num_retries"] = 0  # nor litellm's own retry layer
    params = dict(request)  # what is stored besides the messages (no comprehension: a call each on 3.11)
    params.pop("messages", None)
    params.pop("prompt", None)
    stored_params = redact_params(params) if params else params
    if isinstance(stored_params.get("response_format"), type):
        stored_params["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": stored_params["response_format"].__name__},
        }
    attempt_no = 0
    last_request_id: uuid.UUID | None = None
    request_id = call_id
    created_at = utcnow()

    run_id, step_id = (scope.run_id, scope.step_id) if scope is not None else (None, None)
    stored_api_base = redact_url(api_base)

    def new_record(outcome: dict[str, Any]) -> LLMRequestRecord:
        """The attempt's row, built once its outcome is known (one validation, no assignments)."""
        outcome.setdefault("provider", provider)
        outcome.setdefault("request_params", stored_params)
        return LLMRequestRecord(
            id=request_id,
            flow_run_id=run_id,
            step_run_id=step_id,
            call_id=call_id,
            kind=kind,
            model=model,
            api_base=stored_api_base,
            request_messages=messages,
            attempt=attempt_no,
            created_at=created_at,
            **outcome,
        )

    async def one_attempt() -> LLMCall:
        nonlocal attempt_no, last_request_id, request_id, created_at
        attempt_no += 1
        request_id = last_request_id = new_id()
        created_at = utcnow()
        started = time.perf_counter()
        try:
            fn = litellm.acompletion if kind == "completion" else litellm.aimage_generation
            if tape is not None and tape.replaying:
                response = tape.replay(kind, model, request, _step_name(scope))
            elif in_process:
                async with Deadline(settings.request_timeout):
                    response = await fn(**call_kwargs)
            else:
                _in_flight.count += 1
                try:
                    workers = _worker_count(settings.llm_processes, litellm)
                    if workers:
                        response = await processes.call(litellm, kind, call_kwargs, workers)
                    else:
                        response = await fn(**call_kwargs)
                finally:
                    _in_flight.count -= 1
        except BaseException as exc:
            cancelled = isinstance(exc, asyncio.CancelledError | KeyboardInterrupt)
            status = getattr(exc, "status_code", None)
            prefix = f"HTTP {status} " if isinstance(status, int) and not cancelled else ""
            error_message = redact(f"{prefix}{type(exc).__name__}: {exc}")[:4000]
            record = new_record(
                {
                    "latency_ms": int((time.perf_counter() - started) * 1000),
                    "status": "cancelled" if cancelled else "failed",
                    "error_message": error_message,
                }
            )
            try:
                await store.record_llm_request(record)
            except Exception:  # pragma: no cover - never hide the call's own error behind the log's
                log.exception("could not record a failed LLM request")
            if tape is not None and not tape.replaying and isinstance(status, int):
                if 400 <= status < 500 and not is_transient(exc):  # a refusal the engine acts on
                    tape.record_error(kind, model, request, status, error_message, _step_name(scope))
            raise
        latency = int((time.perf_counter() - started) * 1000)
        prompt, completion, total = _usage(response)
        outcome: dict[str, Any] = {
            "provider": _hidden_params(response).get("custom_llm_provider") or provider,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": total,
            "latency_ms": latency,
            "response": _response_json(response),
        }
        if tape is not None and tape.replaying:  # nothing spent; the row says where the answer came from
            outcome["cost"] = 0.0
            outcome["request_params"] = {**stored_params, "replayed_from": tape.name}
        else:
            outcome["cost"] = _cost(litellm, response, provider_info, kind, model, request)
            if tape is not None:
                tape.record(kind, model, request, response, _step_name(scope))
        record = new_record(outcome)
        await store.record_llm_request(record)
        text = None
        if kind == "completion":
            choices = getattr(response, "choices", None) or []
            text = choices[0].message.content if choices else None
        return LLMCall(
            request_id=record.id,
            model=model,
            provider=record.provider or provider,
            text=text,
            response=response,
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=total,
            cost=record.cost,
            latency_ms=latency,
            attempts=attempt_no,
        )

    def log_retry(exc: BaseException, delay: float) -> None:
        status = getattr(exc, "status_code", None)
        log.warning(
            "%s with model '%s' failed (%s%s); retry %d/%d in %.2fs",
            kind,
            model,
            type(exc).__name__,
            f", HTTP {status}" if isinstance(status, int) else "",
            attempt_no,
            settings.max_retries,
            delay,
        )

    try:
        try:  # the first attempt pays nothing for the retry machinery: most calls succeed first time
            call = await one_attempt()
        except Exception as first_error:
            if settings.max_retries < 1 or not is_transient(first_error, in_process=in_process):
                raise
            call = await _retry_transient(one_attempt, first_error, settings, in_process, log_retry)
    except Exception as exc:
        own = _own_error(exc, in_process)
        if own is not None:
            raise own from None
        status = getattr(exc, "status_code", None)
        transient = is_transient(exc, in_process=in_process)
        first = _first_line(redact(str(exc))) or type(exc).__name__
        hint = (
            f"gave up after {attempt_no} attempt(s); the provider may be down or rate-limiting — "
            "try again later or raise FLOW_ENGINE_MAX_RETRIES / FLOW_ENGINE_REQUEST_TIMEOUT"
            if transient
            else "not retried: check the model name, api_base, API key and request"
        )
        where = f" at {redact_url(api_base)}" if api_base else ""
        if not in_process and "/" in model:  # e.g. offline/x with the offline plugin disabled
            prefix = provider_of(model)
            for plugin in getattr(engine.plugins, "statuses", []):
                if plugin.name == prefix and plugin.status != "loaded":
                    hint += f"; the '{prefix}' plugin is {plugin.status}, so its models are unavailable"
        error = LLMRequestError(
            f"{kind} with model '{model}'{where} failed ({type(exc).__name__}"
            f"{f', HTTP {status}' if isinstance(status, int) else ''}): {first} — {hint}",
            status_code=status if isinstance(status, int) else None,
            transient=transient,
            attempts=attempt_no,
            request_id=last_request_id,
        )
        raise error from exc
    if scope is not None:
        scope.calls.append(call)
    return call


async def complete(
    messages: list[dict[str, Any]],
    *,
    model: str,
    api_base: str | None = None,
    **params: Any,
) -> LLMCall:
    """A chat completion with retries; ``params`` go to ``litellm.acompletion`` as they are.

    ``api_base`` defaults to FLOW_ENGINE_API_BASE; the API key to FLOW_ENGINE_API_KEY (else litellm
    reads the provider's own variable, e.g. OPENAI_API_KEY).
    """
    return await _call_with_retries("completion", model, api_base, {"messages": messages, **params}, messages)


async def generate_image(prompt: str, *, model: str, api_base: str | None = None, **params: Any) -> LLMCall:
    """An image generation with retries through ``litellm.aimage_generation`` (same defaults)."""
    return await _call_with_retries(
        "image_generation",
        model,
        api_base,
        {"prompt": prompt, **params},
        [{"role": "user", "content": prompt}],
    )
