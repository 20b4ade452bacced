"""The offline model: a litellm custom provider ``offline`` that needs no network and no key.

Use ``FLOW_ENGINE_MODEL=offline`` or ``offline/<any-name>``. It answers deterministically: text made
from the prompt, JSON that validates against the requested schema, a small real PNG for images. Usage
is estimated from text length, cost is 0, and ``provider`` is ``offline`` so nobody mistakes it for a
real answer. The same litellm code path runs offline and online.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from flow_engine.plugin import ModelProviderInfo, hookimpl

from .offline_data import SchemaFaker, offline_text, png_bytes, schema_from_prompt


def estimate_tokens(text: str) -> int:
    return max(1, len(text) // 4)


def image_side(size: Any) -> tuple[int, int]:
    """A requested size like ``1024x1536`` scaled down 16 times (8 to 256 pixels a side); 64x64 otherwise."""
    try:
        width, height = (int(part) for part in str(size).lower().split("x", 1))
    except (TypeError, ValueError):
        return 64, 64
    return max(8, min(256, width // 16)), max(8, min(256, height // 16))


def _flatten(messages: list[dict[str, Any]]) -> str:
    parts = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        parts.append(str(content or ""))
    return "\n\n".join(parts)


def answer(model: str, messages: list[dict[str, Any]], optional_params: dict[str, Any]) -> str:
    """The offline model's reply to a chat request."""
    prompt = _flatten(messages)
    last_user = next((m for m in reversed(messages) if m.get("role") == "user"), None)
    material = _flatten([last_user]) if last_user else prompt
    fmt = optional_params.get("response_format") or {}
    schema = None
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema")
    if schema is None:
        schema = schema_from_prompt(prompt)
    if schema is not None:
        first_user = next((m for m in messages if m.get("role") == "user"), None)
        basis = _flatten([first_user]) if first_user else material
        return json.dumps(SchemaFaker(schema, basis).build())
    if isinstance(fmt, dict) and fmt.get("type") == "json_object":
        return json.dumps({"text": offline_text(material, model)})
    max_tokens = optional_params.get("max_tokens") or optional_params.get("max_completion_tokens")
    words = max(1, int(max_tokens * 3 // 4)) if max_tokens else 60
    return offline_text(material, model, max_words=min(words, 200))


def make_handler() -> Any:
    import litellm
    from litellm import CustomLLM

    class OfflineLLM(CustomLLM):  # type: ignore[misc]
        def _respond(
            self, model: str, messages: list[dict[str, Any]], optional_params: dict[str, Any]
        ) -> Any:
            text = answer(model, messages, optional_params)
            prompt_tokens = estimate_tokens(_flatten(messages))
            completion_tokens = estimate_tokens(text)
            return litellm.ModelResponse(
                model=f"offline/{model}",
                choices=[
                    {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
                ],
                usage={
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            )

        def completion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
            return self._respond(model, messages, kwargs.get("optional_params") or {})

        async def acompletion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
            return self._respond(model, messages, kwargs.get("optional_params") or {})

        async def astreaming(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
            """The same answer word by word (``flow run --stream`` with no network), usage last."""
            text = answer(model, messages, kwargs.get("optional_params") or {})
            words = text.split(" ")
            for index, word in enumerate(words):
                piece = word if index == 0 else f" {word}"
                yield {"text": piece, "is_finished": False, "finish_reason": "", "usage": None, "index": 0}
            prompt_tokens = estimate_tokens(_flatten(messages))
            completion_tokens = estimate_tokens(text)
            usage = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            }
            yield {"text": "", "is_finished": True, "finish_reason": "stop", "usage": usage, "index": 0}

        def _image(self, model: str, prompt: str, optional_params: dict[str, Any]) -> Any:
            from litellm.types.utils import ImageObject

            count = int(optional_params.get("n") or 1)
            width, height = image_side(optional_params.get("size"))
            data = [
                ImageObject(
                    b64_json=base64.b64encode(png_bytes(f"{prompt}#{i}", width, height)).decode(),
                    revised_prompt=f"[offline] {prompt}",
                )
                for i in range(count)
            ]
            return litellm.ImageResponse(created=int(time.time()), data=data)

        def image_generation(self, model: str, prompt: str, *args: Any, **kwargs: Any) -> Any:
            return self._image(model, prompt, kwargs.get("optional_params") or {})

        async def aimage_generation(self, model: str, prompt: str, *args: Any, **kwargs: Any) -> Any:
            return self._image(model, prompt, kwargs.get("optional_params") or {})

    return OfflineLLM()


@hookimpl
def register_model_providers(register: Any) -> None:
    register(
        ModelProviderInfo(
            "offline",
            make_handler,
            "deterministic offline model: no network, no key, cost 0",
            supports_response_schema=True,
            free=True,
        )
    )
