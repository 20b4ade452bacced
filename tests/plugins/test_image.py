"""ImageStep: images through litellm's image generation, saved as files under the artifacts folder."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from flow_engine import BaseFlow, ImageStep, configure
from flow_engine.engine import get_engine
from flow_engine.plugins.image import image_dimensions, sniff
from tests.fake_openai_server import Fault, ImageReply, tiny_png, use_fake_openai

pytestmark = pytest.mark.usefixtures("no_network")  # 127.0.0.1 only


class Thumbnail(ImageStep):
    step_name = "create_thumbnail"
    model = "openai/gpt-image-1"

    class Inputs(BaseModel):
        prompt: str
        size: str = "1024x1024"
        quality: str | None = None
        n: int | None = None


class ThumbnailFlow(BaseFlow):
    flow_name = "thumbnail_flow"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        result = await Thumbnail().execute(inputs)
        return {"image": result.output_content, "metadata": result.metadata}


@pytest.fixture
def online(fake_openai, tmp_path):
    use_fake_openai(fake_openai.base_url, tmp_path, artifacts_dir=tmp_path / "artifacts")
    return fake_openai


def read(path: str | Path) -> bytes:
    return Path(path).read_bytes()


def png_info(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    length, tag = struct.unpack(">I4s", data[8:16])
    assert (length, tag) == (13, b"IHDR")
    crc = struct.unpack(">I", data[16 + length : 20 + length])[0]
    assert crc == zlib.crc32(data[12 : 16 + length]) & 0xFFFFFFFF
    width, height = struct.unpack(">II", data[16:24])
    return width, height


async def test_b64_images_are_saved_as_files(online, tmp_path):
    png = tiny_png(5, 4)
    online.script(ImageReply(b64=True, png=png, revised_prompt="a red cat, studio light"))
    flow = ThumbnailFlow()
    outputs = await flow.execute({"prompt": "a cat", "size": "512x512", "quality": "low"})
    image = outputs["image"]
    [entry] = image["images"]
    path = Path(entry["path"])
    assert read(path) == png
    assert path.parent == tmp_path / "artifacts" / str(flow.run_id)
    assert path.suffix == ".png"
    assert entry["mime_type"] == "image/png"
    assert entry["size_bytes"] == len(png)
    assert (entry["width"], entry["height"]) == (5, 4)
    assert entry["revised_prompt"] == "a red cat, studio light"
    assert entry["url"] is None
    assert image["path"] == entry["path"] and image["prompt"] == "a cat"
    [sent] = online.image_requests
    assert sent.body == {"model": "gpt-image-1", "prompt": "a cat", "size": "512x512", "quality": "low"}
    assert outputs["metadata"]["provider"] == "openai"
    # the request log keeps the response without the image bytes
    [record] = get_engine().store.list_llm_requests(flow_run_id=flow.run_id)
    assert record.kind == "image_generation"
    assert "saved as a file" in record.response["data"][0]["b64_json"]
    assert record.request_messages == [{"role": "user", "content": "a cat"}]


async def test_url_images_are_downloaded_and_the_url_kept(online):
    online.script(ImageReply(b64=False, count=2))
    result = await Thumbnail().execute({"prompt": "two dogs", "n": 2})
    images = result.output_content["images"]
    assert len(images) == 2
    for entry in images:
        assert entry["url"].startswith("http://127.0.0.1:")
        data = read(entry["path"])
        assert png_info(data) == (entry["width"], entry["height"])
        assert entry["size_bytes"] == len(data)
    assert images[0]["path"] != images[1]["path"]
    assert online.image_requests[0].body["n"] == 2
    assert Path(images[0]["path"]).parent.name == "untracked"  # called outside any flow


async def test_an_image_that_cannot_be_downloaded_keeps_its_url_and_says_why(online):
    broken = online.base_url.removesuffix("/v1") + "/files/expired.png"
    online.script(ImageReply(b64=False, url=broken))
    result = await Thumbnail().execute({"prompt": "x"})
    [entry] = result.output_content["images"]
    assert entry["path"] is None and entry["url"] == broken
    assert "could not download" in entry["error"] and "404" in entry["error"]


async def test_image_cost_comes_from_litellm(online):
    online.script(ImageReply(usage=(50, 4000)))
    result = await Thumbnail().execute({"prompt": "a cat"})
    assert result.metadata["cost_estimate"] > 0

    class Unpriced(Thumbnail):
        model = "openai/my-image-model"

    online.script(ImageReply())
    result = await Unpriced().execute({"prompt": "a cat"})
    assert result.metadata["cost_estimate"] == 0.0 and result.metadata["cost_known"] is False


async def test_image_failures_are_retried(online):
    online.fail_next(Fault.status(503), endpoint="images").script(ImageReply())
    result = await Thumbnail().execute({"prompt": "a cat"})
    assert read(result.output_content["path"]).startswith(b"\x89PNG")
    assert [r.status for r in get_engine().store.list_llm_requests()] == ["failed", "completed"]


async def test_offline_images_are_real_pngs(engine):
    result = await Thumbnail().execute(
        {"prompt": "a lighthouse at dusk", "size": "1024x1024"}, model="offline"
    )
    [entry] = result.output_content["images"]
    data = read(entry["path"])
    assert png_info(data) == (64, 64)
    assert entry["mime_type"] == "image/png"
    assert entry["revised_prompt"] == "[offline] a lighthouse at dusk"
    assert result.metadata["provider"] == "offline"
    assert result.metadata["cost_estimate"] == 0.0
    # the default artifacts folder is beside the database, under the data folder
    assert Path(entry["path"]).is_relative_to(engine.artifacts_dir)


async def test_by_default_images_go_to_artifacts_beside_the_sqlite_file(fake_openai, tmp_path):
    # not the working directory (tmp_path) nor the data folder: where the database file is
    folder = tmp_path / "elsewhere"
    engine = use_fake_openai(fake_openai.base_url, tmp_path, database_url=f"sqlite:///{folder}/db.sqlite")
    assert engine.settings.artifacts_dir is None
    fake_openai.script(ImageReply(b64=True))
    flow = ThumbnailFlow()
    outputs = await flow.execute({"prompt": "a cat"})
    path = Path(outputs["image"]["path"])
    assert path.parent == folder / "artifacts" / str(flow.run_id)
    assert read(path).startswith(b"\x89PNG")
    assert read(folder / "db.sqlite").startswith(b"SQLite format 3")  # the run went there, too


async def test_offline_image_size_follows_the_requested_size(engine):
    result = await Thumbnail().execute({"prompt": "wide", "size": "1792x1024", "n": 2}, model="offline")
    images = result.output_content["images"]
    assert [(i["width"], i["height"]) for i in images] == [(112, 64), (112, 64)]
    assert png_info(read(images[0]["path"])) == (112, 64)
    assert read(images[0]["path"]) != read(images[1]["path"])


async def test_offline_images_are_deterministic(engine):
    first = await Thumbnail().execute({"prompt": "same"}, model="offline")
    second = await Thumbnail().execute({"prompt": "same"}, model="offline")
    other = await Thumbnail().execute({"prompt": "different"}, model="offline")
    first, second, other = (read(r.output_content["path"]) for r in (first, second, other))
    assert first == second != other


class Plain(ImageStep):
    class Inputs(BaseModel):
        prompt: str


async def test_image_model_resolution(tmp_path, recwarn, fake_openai):
    def notices(text: str) -> int:
        found = sum(text in str(w.message) for w in recwarn)
        recwarn.clear()
        return found

    def setup(**settings: Any) -> None:
        configure(database_url="memory://", data_dir=tmp_path, api_key="test-key", **settings)

    # nothing configured: offline, with the general notice
    setup()
    result = await Plain().execute({"prompt": "p"})
    assert result.metadata["model"] == "offline/default"
    assert notices("no model configured") == 1

    # a real chat model but no image model: offline images, and a notice saying so once
    setup(model="openai/gpt-4o-mini")
    assert (await Plain().execute({"prompt": "p"})).metadata["model"] == "offline/default"
    assert (await Plain().execute({"prompt": "p"})).metadata["model"] == "offline/default"
    assert notices("no image model configured (FLOW_ENGINE_IMAGE_MODEL)") == 1

    # FLOW_ENGINE_IMAGE_MODEL
    setup(model="openai/gpt-4o-mini", image_model="openai/gpt-image-1", api_base=fake_openai.base_url)
    assert (await Plain().execute({"prompt": "p"})).metadata["model"] == "openai/gpt-image-1"
    assert len(fake_openai.image_requests) == 1

    # an offline run makes offline images even with an image model configured
    class Flow(BaseFlow):
        async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
            return {"model": (await Plain().execute({"prompt": "p"})).metadata["model"]}

    assert await Flow().execute({}, model="offline/run") == {"model": "offline/run"}
    assert len(fake_openai.image_requests) == 1
    # the per-call override wins over everything
    assert (await Plain().execute({"prompt": "p"}, model="offline/call")).metadata["model"] == "offline/call"


def test_sniff_and_dimensions():
    assert sniff(tiny_png()) == ("image/png", "png")
    assert sniff(b"\xff\xd8\xff\xe0rest") == ("image/jpeg", "jpg")
    assert sniff(b"GIF89a") == ("image/gif", "gif")
    assert sniff(b"????") == ("application/octet-stream", "bin")
    assert image_dimensions(tiny_png(7, 3)) == (7, 3)
    assert image_dimensions(b"GIF89a" + struct.pack("<HH", 10, 20)) == (10, 20)
    jpeg = (
        b"\xff\xd8"
        + b"\xff\xe0"
        + struct.pack(">H", 4)
        + b"xx"
        + b"\xff\xc0"
        + struct.pack(">HBHH", 11, 8, 30, 40)
    )
    assert image_dimensions(jpeg + b"\x00" * 10) == (40, 30)
    assert image_dimensions(b"nothing") == (None, None)


async def test_images_are_cached_only_when_their_step_asks(online, tmp_path):
    class CachedThumbnail(Thumbnail):
        step_name = "cached_thumbnail"
        cache = True

    png = tiny_png(3, 2)
    online.script(*(ImageReply(b64=True, png=png) for _ in range(3)))
    get_engine().settings.cache = True  # FLOW_ENGINE_CACHE=1: still a new image each time
    for _ in range(2):
        await Thumbnail().execute({"prompt": "a cat"})
    assert len(online.image_requests) == 2
    first = await CachedThumbnail().execute({"prompt": "a dog"})
    again = await CachedThumbnail().execute({"prompt": "a dog"})
    assert len(online.image_requests) == 3  # the second came from the cache
    [saved] = again.output_content["images"]
    assert read(Path(saved["path"])) == png == read(Path(first.output_content["images"][0]["path"]))
