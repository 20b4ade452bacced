"""Structured output: ask for JSON matching ``Outputs``, validate it with pydantic, re-ask on errors.

How the JSON is asked for, best first:

- ``native``: ``response_format=<Outputs>`` (a JSON schema), where litellm says the model supports it;
- ``json``: JSON mode (``response_format={"type": "json_object"}``) with the schema in the prompt;
- ``prompt``: the schema in the prompt only, for servers that reject JSON mode as well.

A server that rejects one of these requests (HTTP 400/404/415/422, an error about ``response_format``,
or - for a native JSON-schema request - any error answer other than rate limiting or a gateway/overload
status, such as llama.cpp's HTTP 500 "Input should be 'text' or 'json_object'") is asked again the next
way down, at once (a native attempt is not retried first); each fall-back is logged and listed in the
step's ``metadata["structured_fallbacks"]``; once that works, the choice is remembered for
that (model, api_base, Outputs) for the engine's lifetime. (Per ``Outputs``: OpenAI's strict mode, for
one, rejects some schemas, e.g. with ``dict`` fields, and accepts others.)

Whatever the way, the answer is validated with pydantic here, and an invalid answer is re-asked with
the validation errors, up to ``max_reasks`` times.
"""

from __future__ import annotations

import json
import logging
import re
import weakref
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from ..engine import Engine, get_engine
from ..errors import StructuredOutputError
from .calls import LLMCall, LLMRequestError, complete
from .loader import ensure_providers, provider_of

log = logging.getLogger("flow_engine.llm")

Mode = Literal["auto", "native", "json", "prompt"]
_LEVELS: tuple[str, ...] = ("native", "json", "prompt")
_REJECTION_STATUS = {400, 404, 415, 422}
_REJECTION_WORDS = re.compile(r"response_format|json_schema|json_object|structured output|schema", re.I)
_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.S)

# (model, api_base, Outputs) -> the first level that worked after a better one was rejected; per
# engine, so ``flow_engine.configure()`` starts afresh
_Key = tuple[str, str | None, str]
_fallbacks: weakref.WeakKeyDictionary[Engine, dict[_Key, str]] = weakref.WeakKeyDictionary()


def _key(model: str, api_base: str | None, outputs: type[BaseModel]) -> _Key:
    return model, api_base, f"{outputs.__module__}.{outputs.__qualname__}"


def remembered_fallbacks() -> dict[_Key, str]:
    """What this engine learnt about servers that reject a way of asking for JSON."""
    return _fallbacks.setdefault(get_engine(), {})


def schema_instruction(outputs: type[BaseModel]) -> str:
    schema = json.dumps(outputs.model_json_schema(), indent=2)
    return (
        "Respond with a single JSON object, and nothing else, that conforms to this JSON schema:\n"
        f"```json-schema\n{schema}\n```"
    )


def _supports_native(model: str, providers: dict[str, Any]) -> bool:
    info = providers.get(provider_of(model)) if "/" in model else None
    if info is not None:
        return bool(info.supports_response_schema)
    litellm = ensure_providers(providers)
    try:
        return bool(litellm.supports_response_schema(model=model))
    except Exception:
        return False


def _candidates(text: str) -> list[str]:
    """The answer as is, without a Markdown fence, and the outermost ``{...}`` in it."""
    stripped = text.strip()
    found = [stripped]
    match = _FENCE.match(stripped)
    if match:
        found.append(match.group(1))
    start, end = stripped.find("{"), stripped.rfind("}")
    if 0 <= start < end:
        found.append(stripped[start : end + 1])
    return list(dict.fromkeys(found))


def parse_answer(outputs: type[BaseModel], text: str) -> BaseModel:
    """Validate ``text`` as ``outputs``, tolerating a Markdown fence or prose around the JSON object.

    Raises the ``ValidationError`` of the answer as given when no reading of it validates.
    """
    first_error: ValidationError | None = None
    for candidate in _candidates(text):
        try:
            return outputs.model_validate_json(candidate)
        except ValidationError as exc:
            if first_error is None or (_is_json_error(first_error) and not _is_json_error(exc)):
                first_error = exc
    assert first_error is not None
    raise first_error


def _is_json_error(exc: ValidationError) -> bool:
    return any(err.get("type") == "json_invalid" for err in exc.errors())


def format_errors(exc: ValidationError) -> str:
    return "\n".join(
        f"- {'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors()
    )


def _is_rejection(exc: LLMRequestError, level: str = "json") -> bool:
    if exc.status_code in _REJECTION_STATUS:
        return True
    if level == "native" and exc.kind == "http" and exc.status_code is not None:
        return exc.status_code >= 500 and exc.status_code not in {502, 503, 504}
    return not exc.transient and bool(_REJECTION_WORDS.search(str(exc)))


def _start_level(
    mode: Mode, model: str, api_base: str | None, outputs: type[BaseModel], providers: dict[str, Any]
) -> str:
    if mode != "auto":
        return mode
    remembered = remembered_fallbacks().get(_key(model, api_base, outputs))
    if remembered is not None:
        return remembered
    return "native" if _supports_native(model, providers) else "json"


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
    """Return the validated object, the last successful call, and the way used (native/json/prompt)."""
    level = _start_level(mode, model, api_base, outputs, providers)
    conversation = list(messages) if level == "native" else _with_schema(messages, outputs)
    fell_back = False
    fallbacks: list[dict[str, Any]] = []
    last_error: ValidationError | None = None
    last_text = ""
    answers = 0
    while True:
        request = dict(params)
        if level == "native":
            request["response_format"] = outputs
        elif level == "json":
            request["response_format"] = {"type": "json_object"}
        can_fall_back = mode == "auto" and level != "prompt"
        try:
            call = await complete(
                conversation,
                model=model,
                api_base=api_base,
                retry_server_errors=not (can_fall_back and level == "native"),
                **request,
            )
        except LLMRequestError as exc:
            if can_fall_back and _is_rejection(exc, level):
                lower = _LEVELS[_LEVELS.index(level) + 1]
                fallbacks.append({"from": level, "to": lower, "error": str(exc)[:1000]})
                log.warning(
                    "model '%s' rejected %s structured output; asking again in %s mode: %s",
                    model,
                    level,
                    lower,
                    exc,
                )
                level = lower
                conversation = _with_schema(conversation, outputs)
                fell_back = True
                continue
            raise
        if fell_back:  # this way works where a better one was rejected: remember it
            remembered_fallbacks()[_key(model, api_base, outputs)] = level
            fell_back = False
        answers += 1
        last_text = call.text or ""
        try:
            obj = parse_answer(outputs, last_text)
            if fallbacks:
                call.fallbacks = fallbacks
            return obj, call, level
        except ValidationError as exc:
            last_error = exc
        if answers > max_reasks:
            break
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
    error = StructuredOutputError(
        f"model '{model}' gave no valid {outputs.__name__} in {answers} answer(s) "
        f"({max_reasks} re-ask(s) allowed); last validation errors:\n{format_errors(last_error)}\n"
        f"last answer: {last_text[:500]!r}"
    )
    error.validation_errors = last_error.errors(include_url=False)  # type: ignore[attr-defined]
    error.last_answer = last_text  # type: ignore[attr-defined]
    raise error


def _with_schema(messages: list[dict[str, Any]], outputs: type[BaseModel]) -> list[dict[str, Any]]:
    """The conversation with the schema instruction in its (first) system message."""
    instruction = schema_instruction(outputs)
    if any(instruction in str(m.get("content", "")) for m in messages):
        return list(messages)
    if messages and messages[0].get("role") == "system" and isinstance(messages[0].get("content"), str):
        first = {**messages[0], "content": f"{messages[0]['content']}\n\n{instruction}"}
        return [first, *messages[1:]]
    return [{"role": "system", "content": instruction}, *messages]
