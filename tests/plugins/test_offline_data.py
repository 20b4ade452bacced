"""The offline model's made-up data: schema-valid objects for any Outputs, regex strings, real PNGs."""

from __future__ import annotations

import enum
import re
import struct
import uuid
import zlib
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from ipaddress import IPv4Address
from typing import Annotated, Any, Literal

import pytest
from pydantic import AnyUrl, BaseModel, Field, conint, constr

from flow_engine.plugins.offline_data import (
    SchemaFaker,
    offline_text,
    png_bytes,
    sample_pattern,
    schema_from_prompt,
)


class Mood(enum.Enum):
    HAPPY = "happy"
    SAD = "sad"


class Priority(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Author(BaseModel):
    name: str = Field(min_length=2, max_length=12)
    email: str | None = None


class Section(BaseModel):
    heading: str
    author: Author
    paragraphs: list[str] = Field(min_length=2, max_length=4)


class Everything(BaseModel):
    title: str = Field(max_length=20)
    slug: Annotated[str, Field(pattern=r"^[a-z]{3,8}-[0-9]{2}$")]
    code: constr(pattern=r"^[A-Z]{3}\d{4}$")  # type: ignore[valid-type]
    mood: Mood
    priority: Priority
    kind: Literal["news", "blog"]
    fixed: Literal["always"]
    score: float = Field(ge=0.5, le=0.75)
    rating: conint(ge=1, le=5)  # type: ignore[valid-type]
    even: int = Field(ge=3, le=20, multiple_of=4)
    tiny: float = Field(gt=0, lt=0.01)
    step: float = Field(multiple_of=0.25, ge=1)
    count: int = Field(gt=-10, lt=-2)
    tags: list[str] = Field(min_length=1, max_length=2)
    many: list[int] = Field(min_length=5)
    unique_moods: set[Mood]
    unique_words: set[str]
    pair: tuple[int, str]
    sections: list[Section]
    lead: Section
    counts: dict[str, int]
    labels: dict[str, Author] = Field(min_length=2)
    keyed: dict[Literal["a", "b"], int]
    anything: dict[str, Any]
    when: datetime
    day: date
    at: time
    lasting: timedelta
    ident: uuid.UUID
    link: AnyUrl
    address: IPv4Address
    price: Decimal
    flag: bool
    nickname: str | None = None
    maybe_section: Section | None = None
    default_list: list[str] = []
    union: int | str


class Node(BaseModel):
    value: str
    children: list[Node]


class Tree(BaseModel):
    root: Node
    parent: Node | None = None


MODELS = [Everything, Section, Author, Tree]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
@pytest.mark.parametrize("prompt", ["Summarize the article about whales.", "", "x", "Ünïcödé — prompt! 123"])
def test_any_pydantic_schema_gets_a_valid_instance(model: type[BaseModel], prompt: str):
    data = SchemaFaker(model.model_json_schema(), prompt).build()
    model.model_validate(data)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_litellm_strict_schemas_get_a_valid_instance_too(model: type[BaseModel]):
    """The schema litellm sends for ``response_format=Model`` (all required, no extra properties)."""
    from litellm.utils import type_to_response_format_param

    schema = type_to_response_format_param(model)["json_schema"]["schema"]
    model.model_validate(SchemaFaker(schema, "some prompt words").build())


def test_same_prompt_same_instance_and_it_follows_the_prompt():
    schema = Everything.model_json_schema()
    first = SchemaFaker(schema, "Whales migrate across oceans").build()
    assert first == SchemaFaker(schema, "Whales migrate across oceans").build()
    assert first != SchemaFaker(schema, "Volcanoes erupt under pressure").build()
    words = " ".join(str(v) for v in first.values())
    assert any(w in words for w in ("Whales", "migrate", "oceans", "whales"))


def test_constraints_are_respected():
    data = Everything.model_validate(SchemaFaker(Everything.model_json_schema(), "a b c").build())
    assert len(data.title) <= 20
    assert re.fullmatch(r"[a-z]{3,8}-[0-9]{2}", data.slug)
    assert 0.5 <= data.score <= 0.75 and 1 <= data.rating <= 5
    assert data.even % 4 == 0 and 3 <= data.even <= 20
    assert 0 < data.tiny < 0.01
    assert -10 < data.count < -2
    assert 1 <= len(data.tags) <= 2 and len(data.many) >= 5
    assert 2 <= len(data.sections[0].paragraphs) <= 4
    assert len(data.labels) >= 2
    assert data.unique_moods <= set(Mood)


def test_optional_fields_may_be_left_out_deep_down_and_recursion_ends():
    tree = Tree.model_validate(SchemaFaker(Tree.model_json_schema(), "root").build())

    def depth(node: Node) -> int:
        return 1 + max((depth(c) for c in node.children), default=0)

    assert 1 < depth(tree.root) < 12


def test_sample_pattern():
    for pattern in [
        r"^\d{3}-\d{4}$",
        r"^(foo|bar)+baz?$",
        r"[A-F0-9]{8}",
        r"^\w+@\w+\.com$",
        r"^[^x]{2}$",
        r"(ab)\1",
    ]:
        text = sample_pattern(pattern, 42)
        assert text is not None and re.search(pattern, text), pattern
    assert sample_pattern(r"^a+$", 1, min_length=5) == "aaaaa"
    assert sample_pattern(r"^a{10}$", 1, max_length=3) is None
    assert sample_pattern("(unclosed", 1) is None


def test_schema_travels_in_the_prompt():
    from flow_engine.llm.structured import schema_instruction

    assert (
        schema_from_prompt("before\n" + schema_instruction(Author) + "\nafter") == Author.model_json_schema()
    )
    assert schema_from_prompt("no schema here") is None
    assert schema_from_prompt("```json-schema\n{broken\n```") is None


def test_offline_text_takes_the_material_from_the_prompt():
    text = offline_text("Instructions here.\n\nThe actual material about owls", "default")
    assert text.startswith("[offline:default] ") and "owls" in text and "Instructions" not in text
    assert len(offline_text("word " * 500, "m", max_words=10).split()) == 11


def test_png_bytes_is_a_real_png():
    data = png_bytes("a prompt", 16)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    offset, chunks = 8, []
    while offset < len(data):
        length, tag = struct.unpack(">I4s", data[offset : offset + 8])
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert crc == zlib.crc32(tag + body) & 0xFFFFFFFF
        chunks.append((tag, body))
        offset += 12 + length
    assert [tag for tag, _ in chunks] == [b"IHDR", b"IDAT", b"IEND"]
    width, height, depth, colour, *_ = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (width, height, depth, colour) == (16, 16, 8, 2)
    raw = zlib.decompress(chunks[1][1])
    assert len(raw) == height * (1 + width * 3)
    assert png_bytes("a prompt", 16) == data != png_bytes("another", 16)
