"""Step type ``image_generation``: images through ``litellm.aimage_generation``, saved as files."""

from __future__ import annotations

import asyncio
import base64
import binascii
import struct
import uuid
import warnings
import weakref
from pathlib import Path
from typing import Any

from flow_engine.context import current_run, current_step
from flow_engine.engine import OFFLINE_MODEL, OfflineModelWarning
from flow_engine.llm_step import input_variables, normalize_model
from flow_engine.plugin import LLMStep, StepOutput, StepTypeInfo, get_engine, hookimpl

IMAGE_GENERATION = "image_generation"  # the step type's name (StepType.IMAGE_GENERATION)
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


def image_dimensions(data: bytes) -> tuple[int | None, int | None]:
    """Width and height from a PNG, GIF or JPEG header (None when unknown)."""
    try:
        if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR":
            width, height = struct.unpack(">II", data[16:24])
            return int(width), int(height)
        if data.startswith(b"GIF8"):
            width, height = struct.unpack("<HH", data[6:10])
            return int(width), int(height)
        if data.startswith(b"\xff\xd8"):
            i = 2
            while i + 9 < len(data):
                if data[i] != 0xFF:
                    i += 1
                    continue
                marker = data[i + 1]
                length = struct.unpack(">H", data[i + 2 : i + 4])[0]
                if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                    height, width = struct.unpack(">HH", data[i + 5 : i + 9])
                    return int(width), int(height)
                i += 2 + length
    except struct.error:
        pass
    return None, None


_offline_image_notice: weakref.WeakSet[Any] = weakref.WeakSet()


class ImageStep(LLMStep):
    """Generates images. Inputs it reads when present: ``prompt``, ``size``, ``quality``, ``n``.

    ``result.output_content`` is a dict: ``images`` (per image: ``path`` of the saved file, provider
    ``url``, ``revised_prompt``, ``mime_type``, ``size_bytes``, ``width``, ``height``), the ``path`` and
    ``url`` of the first image, and the ``prompt``. Files go under the artifacts folder
    (FLOW_ENGINE_ARTIFACTS_DIR, default beside the database), in a folder per run.

    Model: per-call override > step ``model`` > the offline model when the run's chat model is offline >
    FLOW_ENGINE_IMAGE_MODEL > the offline model (with a one-line notice on stderr).
    """

    step_type = IMAGE_GENERATION

    def image_model(self) -> str:
        scope = current_step.get()
        if scope and scope.model_override:
            return scope.model_override
        if self.model:
            return self.model
        engine = get_engine()
        ctx = current_run.get()
        chat_model = (ctx.run_level_model() if ctx else None) or engine.settings.model
        if chat_model is None and not engine.settings.image_model:
            return engine.default_model()  # nothing configured: offline, with the general notice
        if chat_model and chat_model.split("/", 1)[0] in engine.plugins.model_providers():
            return chat_model  # an offline run makes offline images
        if engine.settings.image_model:
            return engine.settings.image_model
        if engine not in _offline_image_notice:
            _offline_image_notice.add(engine)
            warnings.warn(
                "flow-engine: no image model configured (FLOW_ENGINE_IMAGE_MODEL); image steps use the "
                f"offline model '{OFFLINE_MODEL}', which makes up its images.",
                OfflineModelWarning,
                stacklevel=2,
            )
        return OFFLINE_MODEL

    async def run(self, inputs: Any) -> StepOutput:
        from flow_engine.plugin import generate_image

        variables = input_variables(inputs)
        params = {k: variables[k] for k in ("size", "quality", "n") if variables.get(k) is not None}
        model = normalize_model(self.image_model())
        prompt = self.render(inputs)
        call = await generate_image(
            prompt,
            model=model,
            api_base=self.resolve_api_base(),
            drop_params=True,
            **params,
            **self.llm_params,
        )
        images = [await self._save(item, i) for i, item in enumerate(call.response.data or [])]
        content = {
            "images": images,
            "path": images[0]["path"] if images else None,
            "url": images[0]["url"] if images else None,
            "prompt": prompt,
        }
        return StepOutput(content=content, provider=call.provider, model=model)

    async def _save(self, item: Any, index: int) -> dict[str, Any]:
        b64 = getattr(item, "b64_json", None)
        url = getattr(item, "url", None)
        entry: dict[str, Any] = {
            "path": None,
            "url": url,
            "revised_prompt": getattr(item, "revised_prompt", None),
            "mime_type": None,
            "size_bytes": None,
            "width": None,
            "height": None,
        }
        data: bytes | None = None
        if b64:
            try:
                data = base64.b64decode(b64, validate=True)
            except (binascii.Error, ValueError) as exc:
                entry["error"] = f"invalid b64_json from the provider: {exc}"
        elif url and url.startswith(("http://", "https://")):
            data = await self._download(url, entry)
        elif url and url.startswith("data:") and ";base64," in url:
            data = base64.b64decode(url.split(";base64,", 1)[1])
            entry["url"] = None  # a data: URL is the image itself, not a link worth keeping
        if data is not None:
            mime, ext = sniff(data)
            folder = self._artifact_folder()
            path = folder / f"{self.step_name}-{uuid.uuid4().hex[:8]}-{index}.{ext}"
            await asyncio.to_thread(_write, path, data)
            width, height = image_dimensions(data)
            entry.update(path=str(path), mime_type=mime, size_bytes=len(data), width=width, height=height)
        return entry

    async def _download(self, url: str, entry: dict[str, Any]) -> bytes | None:
        import httpx

        try:
            timeout = get_engine().settings.request_timeout
            async with httpx.AsyncClient(timeout=timeout, follow_redirects=True) as client:
                response = await client.get(url)
                response.raise_for_status()
                return response.content
        except httpx.HTTPError as exc:
            entry["error"] = f"could not download the image: {type(exc).__name__}: {exc}"
            return None

    def _artifact_folder(self) -> Path:
        root = get_engine().artifacts_dir
        ctx = current_run.get()
        return root / (str(ctx.run_id) if ctx else "untracked")


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@hookimpl
def register_step_types(register: Any) -> None:
    register(StepTypeInfo(IMAGE_GENERATION, ImageStep, "image generation, saved as files"))
