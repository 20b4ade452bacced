"""Structured output: ask for JSON matching ``Outputs``, validate it with pydantic, re-ask on errors.

Native structured output (``response_format=<model>``, a JSON schema) is used where litellm says the
model supports it; otherwise JSON mode with the schema in the prompt. A server that rejects the schema
request (4xx) is asked again in JSON mode, and that choice is remembered for the model.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from ..errors import StructuredOutputError
from .calls import LLMCall, LLMRequestError, complete
from .loader import ensure_providers, provider_of

Mode = Literal["auto", "native", "json"]
_REJECTED_NATIVE: set[tuple[str, str | None]] = set()
_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.S)


def schema_instruction(outputs: type[BaseModel]) -> str:
    schema = json.dumps(outputs.model_json_schema(), indent=2)
    return (
        "Respond with a single JSON object, and nothing else, that conforms to this JSON schema:\n"
        f"```json-schema\n{schema}\n```"
    )


def _supports_native(model: str, providers: dict[str, Any]) -> bool:
    info = providers.get(provider_of(model))
    if info is not None:
        return bool(info.supports_response_schema)
    litellm = ensure_providers(providers)
    try:
        return bool(litellm.supports_response_schema(model=model))
    except Exception:
        return False


def _strip_fences(text: str) -> str:
    match = _FENCE.match(text)
    return match.group(1) if match else text.strip()


def format_errors(exc: ValidationError) -> str:
    return "\n".join(
        f"- {'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors()
    )


async def complete_structured(
    messages: list[dict[str, Any]],
    outputs: type[BaseModel],
    *,
    model: str,
    api_base: str | None,
    providers: dict[str, Any],
    max_reasks: int,
    mode: Mode = "auto",
    **params: Any,
) -> tuple[BaseModel, LLMCall, str]:
    """Return the validated object, the last successful call, and the mode used (native/json)."""
    use_native = mode == "native" or (
        mode == "auto" and (model, api_base) not in _REJECTED_NATIVE and _supports_native(model, providers)
    )
    conversation = list(messages)
    if not use_native:
        conversation = _with_schema(conversation, outputs)
    last_error: ValidationError | None = None
    last_text = ""
    reasks = 0
    while True:
        request = dict(params)
        request["response_format"] = outputs if use_native else {"type": "json_object"}
        try:
            call = await complete(conversation, model=model, api_base=api_base, **request)
        except LLMRequestError as exc:
            if use_native and mode == "auto" and exc.status_code in (400, 404, 415, 422):
                _REJECTED_NATIVE.add((model, api_base))
                use_native = False
                conversation = _with_schema(conversation, outputs)
                continue
            raise
        last_text = call.text or ""
        try:
            return outputs.model_validate_json(_strip_fences(last_text)), call, "native" if use_native else "json"
        except ValidationError as exc:
            last_error = exc
        if reasks >= max_reasks:
            break
        reasks += 1
        conversation = [
            *conversation,
            {"role": "assistant", "content": last_text},
            {
                "role": "user",
                "content": "Your answer did not validate against the schema:\n"
                f"{format_errors(last_error)}\nReply again with only the corrected JSON object.",
            },
        ]
    assert last_error is not None
    raise StructuredOutputError(
        f"model '{model}' gave no valid {outputs.__name__} after {reasks + 1} attempt(s); "
        f"last validation errors:\n{format_errors(last_error)}\nlast answer: {last_text[:500]!r}"
    )


def _with_schema(messages: list[dict[str, Any]], outputs: type[BaseModel]) -> list[dict[str, Any]]:
    instruction = schema_instruction(outputs)
    if any(instruction in str(m.get("content", "")) for m in messages):
        return messages
    return [{"role": "system", "content": instruction}, *messages]
