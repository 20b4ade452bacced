"""One LLM call = one or more attempts through litellm, each recorded in ``llm_requests``.

Retries of transient failures (429, 5xx, timeouts, connection errors) live here and only here: the
openai SDK's own retries are switched off (``max_retries=0``) so every attempt is counted, backed off
(tenacity, honouring ``Retry-After``) and stored.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from ..context import current_step
from ..engine import get_engine
from ..errors import LLMError
from ..storage import LLMRequestRecord
from .loader import ensure_providers, provider_of
from .redact import redact_params, redact_text, redact_url

TRANSIENT_STATUS = {408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529}
TRANSIENT_NAMES = {"Timeout", "APITimeoutError", "APIConnectionError", "ServiceUnavailableError", "BadGatewayError"}


class LLMRequestError(LLMError):
    """An LLM request failed for good. ``status_code`` is the HTTP status when there was one."""

    def __init__(self, message: str, *, status_code: int | None, transient: bool, attempts: int):
        super().__init__(message)
        self.status_code = status_code
        self.transient = transient
        self.attempts = attempts


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


def is_transient(exc: BaseException) -> bool:
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and status in TRANSIENT_STATUS:
        return True
    return any(cls.__name__ in TRANSIENT_NAMES for cls in type(exc).__mro__)


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or getattr(exc, "litellm_response_headers", None)
    if not headers:
        return None
    value = headers.get("retry-after") or headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _wait(settings: Any) -> Any:
    backoff = wait_exponential_jitter(initial=settings.retry_initial_delay, max=settings.retry_max_delay)

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        hinted = _retry_after(exc) if exc else None
        if hinted is not None:
            return float(min(hinted, settings.retry_max_delay))
        return float(backoff(state))

    return wait


def _usage(response: Any) -> tuple[int, int, int]:
    usage = getattr(response, "usage", None)
    if usage is None:
        return 0, 0, 0
    prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
    completion = int(getattr(usage, "completion_tokens", 0) or 0)
    total = int(getattr(usage, "total_tokens", 0) or 0) or prompt + completion
    return prompt, completion, total


def _cost(litellm: Any, response: Any, provider_info: Any, kind: str) -> float | None:
    """litellm's cost, or None when it does not know the model's price (never a silent 0)."""
    if provider_info is not None:
        return 0.0 if provider_info.free else None
    hidden = getattr(response, "_hidden_params", None) or {}
    cost = hidden.get("response_cost")
    if cost is None:
        try:
            cost = litellm.completion_cost(completion_response=response, call_type=kind)
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


async def _call_with_retries(
    kind: str,
    model: str,
    api_base: str | None,
    request: dict[str, Any],
    messages: list[dict[str, Any]] | None,
) -> LLMCall:
    engine = get_engine()
    settings = engine.settings
    providers = engine.plugins.model_providers()
    litellm = ensure_providers(providers)
    if "/" not in model and model in providers:  # "offline" means "offline/default"
        model = f"{model}/default"
    provider = provider_of(model)
    provider_info = providers.get(provider)
    scope = current_step.get()
    store = engine.store
    call_id = uuid.uuid4()
    secrets = [settings.api_key] if settings.api_key else []
    call_kwargs: dict[str, Any] = {"model": model, "timeout": settings.request_timeout, **request}
    if api_base:
        call_kwargs["api_base"] = api_base
    if settings.api_key and "api_key" not in call_kwargs:
        call_kwargs["api_key"] = settings.api_key
    call_kwargs["max_retries"] = 0  # the openai SDK must not retry behind our back
    if kind == "completion":
        call_kwargs["num_retries"] = 0
    stored_params = redact_params({k: v for k, v in request.items() if k != "messages"})
    if "response_format" in stored_params and isinstance(stored_params["response_format"], type):
        stored_params["response_format"] = stored_params["response_format"].__name__
    attempt_no = 0
    spent_tokens = 0

    async def one_attempt() -> LLMCall:
        nonlocal attempt_no, spent_tokens
        attempt_no += 1
        record = LLMRequestRecord(
            flow_run_id=scope.run_id if scope else None,
            step_run_id=scope.step_id if scope else None,
            call_id=call_id,
            kind=kind,
            model=model,
            provider=provider,
            api_base=redact_url(api_base),
            request_messages=messages,
            request_params=stored_params,
            attempt=attempt_no,
        )
        started = time.perf_counter()
        try:
            if kind == "completion":
                response = await litellm.acompletion(**call_kwargs)
            else:
                response = await litellm.aimage_generation(**call_kwargs)
        except Exception as exc:
            record.latency_ms = int((time.perf_counter() - started) * 1000)
            record.status = "failed"
            record.error_message = redact_text(f"{type(exc).__name__}: {exc}", secrets)[:4000]
            await store.record_llm_request(record)
            raise
        latency = int((time.perf_counter() - started) * 1000)
        prompt, completion, total = _usage(response)
        hidden = getattr(response, "_hidden_params", None) or {}
        record.provider = hidden.get("custom_llm_provider") or provider
        record.prompt_tokens, record.completion_tokens, record.total_tokens = prompt, completion, total
        record.cost = _cost(litellm, response, provider_info, kind)
        record.latency_ms = latency
        record.response = _response_json(response)
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

    retrying = AsyncRetrying(
        stop=stop_after_attempt(settings.max_retries + 1),
        wait=_wait(settings),
        retry=retry_if_exception(is_transient),
        reraise=True,
    )
    try:
        call = await retrying(one_attempt)
    except Exception as exc:
        status = getattr(exc, "status_code", None)
        transient = is_transient(exc)
        detail = redact_text(str(exc), secrets).strip().splitlines()
        first = detail[0][:500] if detail else type(exc).__name__
        hint = (
            f"gave up after {attempt_no} attempt(s); the provider may be down or rate-limiting — "
            "try again later or raise FLOW_ENGINE_MAX_RETRIES"
            if transient
            else "not retried: check the model name, api_base, API key and request"
        )
        raise LLMRequestError(
            f"{kind} with model '{model}' failed ({type(exc).__name__}"
            f"{f', HTTP {status}' if status else ''}): {first} — {hint}",
            status_code=status if isinstance(status, int) else None,
            transient=transient,
            attempts=attempt_no,
        ) from exc
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
    """A chat completion with retries; ``params`` go to ``litellm.acompletion`` as they are."""
    return await _call_with_retries(
        "completion", model, api_base, {"messages": messages, **params}, messages
    )


async def generate_image(prompt: str, *, model: str, api_base: str | None = None, **params: Any) -> LLMCall:
    """An image generation with retries through ``litellm.aimage_generation``."""
    return await _call_with_retries(
        "image_generation", model, api_base, {"prompt": prompt, **params}, [{"role": "user", "content": prompt}]
    )
