"""Step type ``image_generation``: images through ``litellm.aimage_generation``, saved as files."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path
from typing import Any

from flow_engine.context import current_run, current_step
from flow_engine.engine import OFFLINE_MODEL, get_engine
from flow_engine.hookspecs import hookimpl
from flow_engine.llm_step import LLMStep, input_variables, normalize_model
from flow_engine.plugin_types import StepTypeInfo
from flow_engine.steps import StepOutput, StepType

_MAGIC = [
    (b"\x89PNG\r\n\x1a\n", "image/png", "png"),
    (b"\xff\xd8\xff", "image/jpeg", "jpg"),
    (b"GIF8", "image/gif", "gif"),
    (b"RIFF", "image/webp", "webp"),
]


def sniff(data: bytes) -> tuple[str, str]:
    for magic, mime, ext in _MAGIC:
        if data.startswith(magic):
            return mime, ext
    return "application/octet-stream", "bin"


class ImageStep(LLMStep):
    """Generates images. Inputs it reads when present: ``prompt``, ``size``, ``quality``, ``n``.

    ``result.output_content`` is a dict: ``images`` (per image: ``path``, ``url``, ``revised_prompt``,
    ``mime_type``, ``size_bytes``) and, for convenience, ``path`` and ``url`` of the first image.
    Model: per-call override > step ``model`` > FLOW_ENGINE_IMAGE_MODEL > the offline model.
    """

    step_type = StepType.IMAGE_GENERATION

    def image_model(self) -> str:
        scope = current_step.get()
        if scope and scope.model_override:
            return scope.model_override
        if self.model:
            return self.model
        engine = get_engine()
        if engine.settings.image_model:
            return engine.settings.image_model
        ctx = current_run.get()
        run_model = (ctx.run_level_model() if ctx else None) or engine.settings.model
        if run_model and run_model.startswith("offline"):
            return run_model
        return OFFLINE_MODEL

    async def run(self, inputs: Any) -> StepOutput:
        from flow_engine.llm import generate_image

        variables = input_variables(inputs)
        params = {k: variables[k] for k in ("size", "quality", "n") if variables.get(k) is not None}
        model = normalize_model(self.image_model())
        prompt = self.render(inputs)
        call = await generate_image(
            prompt, model=model, api_base=self.resolve_api_base(), drop_params=True, **params, **self.llm_params
        )
        images = [await self._save(item, prompt, i) for i, item in enumerate(call.response.data or [])]
        content = {
            "images": images,
            "path": images[0]["path"] if images else None,
            "url": images[0]["url"] if images else None,
            "prompt": prompt,
        }
        return StepOutput(content=content, provider=call.provider, model=model)

    async def _save(self, item: Any, prompt: str, index: int) -> dict[str, Any]:
        b64 = getattr(item, "b64_json", None)
        url = getattr(item, "url", None)
        entry: dict[str, Any] = {
            "path": None,
            "url": url,
            "revised_prompt": getattr(item, "revised_prompt", None),
            "mime_type": None,
            "size_bytes": None,
        }
        data: bytes | None = None
        if b64:
            data = base64.b64decode(b64)
        elif url and url.startswith(("http://", "https://")):
            import httpx

            try:
                async with httpx.AsyncClient(timeout=60, follow_redirects=True) as client:
                    response = await client.get(url)
                    response.raise_for_status()
                    data = response.content
            except httpx.HTTPError as exc:
                entry["download_error"] = f"{type(exc).__name__}: {exc}"
        if data is not None:
            mime, ext = sniff(data)
            folder = self._artifact_folder()
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{self.step_name}-{uuid.uuid4().hex[:8]}-{index}.{ext}"
            path.write_bytes(data)
            entry.update(path=str(path), mime_type=mime, size_bytes=len(data))
        return entry

    def _artifact_folder(self) -> Path:
        root = get_engine().settings.resolved_artifacts_dir()
        ctx = current_run.get()
        return root / (str(ctx.run_id) if ctx else "untracked")


@hookimpl
def register_step_types(register: Any) -> None:
    register(StepTypeInfo(StepType.IMAGE_GENERATION, ImageStep, "image generation, saved as files"))
