"""Deterministic made-up answers for the offline model: text from the prompt, JSON for a schema, a PNG.

No fake-data library fits here: they generate from Python classes and random seeds, while the offline
model only sees a JSON schema and must answer the same prompt the same way every time.
"""

from __future__ import annotations

import hashlib
import re
import struct
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'’-]*")
_SCHEMA_BLOCK = re.compile(r"```json-schema\s*(\{.*?\})\s*```", re.S)
_STOP = {"the", "a", "an", "of", "and", "or", "to", "in", "below", "above", "content", "article"}


def words_of(text: str) -> list[str]:
    return _WORD.findall(text)


def digest(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def subject_words(prompt: str) -> list[str]:
    """The words of the prompt's last paragraph (usually the material), else of the whole prompt."""
    paragraphs = [p for p in re.split(r"\n\s*\n", prompt.strip()) if words_of(p)]
    material = paragraphs[-1] if paragraphs else prompt
    return words_of(material) or ["nothing"]


def offline_text(prompt: str, model: str, max_words: int = 60) -> str:
    words = subject_words(prompt)
    excerpt = " ".join(words[:max_words])
    return f"[offline:{model}] {excerpt}"


def schema_from_prompt(text: str) -> dict[str, Any] | None:
    import json

    match = _SCHEMA_BLOCK.search(text)
    if not match:
        return None
    try:
        schema = json.loads(match.group(1))
    except ValueError:
        return None
    return schema if isinstance(schema, dict) else None


class SchemaFaker:
    """Builds an instance of a JSON schema (the subset pydantic emits), deterministically."""

    def __init__(self, schema: dict[str, Any], prompt: str):
        self.root = schema
        self.words = subject_words(prompt)
        self.seed = digest(prompt)

    def build(self) -> Any:
        return self.value(self.root, "value", 0)

    def _resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        ref = schema.get("$ref")
        while ref:
            target: Any = self.root
            for part in ref.lstrip("#/").split("/"):
                target = target[part]
            schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
            ref = target.get("$ref")
        return schema

    def _phrase(self, name: str, count: int) -> str:
        words = [w for w in self.words if w.lower() not in _STOP] or self.words
        start = (self.seed + digest(name)) % max(1, len(words))
        picked = [words[(start + i) % len(words)] for i in range(count)]
        return " ".join(picked)

    def value(self, schema: dict[str, Any], name: str, depth: int) -> Any:
        schema = self._resolve(schema)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return schema["enum"][(self.seed + digest(name)) % len(schema["enum"])]
        if "default" in schema and depth > 0 and schema["default"] is not None:
            return schema["default"]
        for key in ("anyOf", "oneOf"):
            if key in schema:
                options = [o for o in schema[key] if self._resolve(o).get("type") != "null"] or schema[key]
                return self.value(options[0], name, depth)
        if "allOf" in schema:
            merged: dict[str, Any] = {}
            for part in schema["allOf"]:
                merged.update(self._resolve(part))
            return self.value(merged, name, depth)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind is None:
            kind = "object" if "properties" in schema else "string"
        return getattr(self, f"_{kind}", self._string)(schema, name, depth)

    def _object(self, schema: dict[str, Any], name: str, depth: int) -> Any:
        props = schema.get("properties", {})
        required = set(schema.get("required", props))
        result = {}
        for prop, sub in props.items():
            if prop in required or depth < 3:
                result[prop] = self.value(sub, prop, depth + 1)
        extra = schema.get("additionalProperties")
        if not props and isinstance(extra, dict):
            result[self._phrase(name, 1).lower() or "key"] = self.value(extra, name, depth + 1)
        return result

    def _array(self, schema: dict[str, Any], name: str, depth: int) -> Any:
        low = int(schema.get("minItems", 0))
        high = schema.get("maxItems")
        count = max(low, 3 if depth < 3 else 1)
        if high is not None:
            count = min(count, int(high))
        items = schema.get("items", {"type": "string"})
        if isinstance(items, list):  # prefixItems-like tuples
            return [self.value(s, f"{name}{i}", depth + 1) for i, s in enumerate(items)]
        values = [self.value(items, f"{name}{i}", depth + 1) for i in range(count)]
        if schema.get("uniqueItems"):
            values = [v if i == 0 else _distinct(v, i) for i, v in enumerate(values)]
        return values

    def _string(self, schema: dict[str, Any], name: str, depth: int) -> str:
        fmt = schema.get("format")
        base = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=self.seed % 500_000)
        if fmt == "date-time":
            return base.isoformat()
        if fmt == "date":
            return base.date().isoformat()
        if fmt == "time":
            return base.time().isoformat()
        if fmt in ("uri", "url"):
            return f"https://example.com/offline/{self._phrase(name, 2).replace(' ', '-').lower()}"
        if fmt == "email":
            return "offline@example.com"
        if fmt == "uuid":
            return "00000000-0000-4000-8000-" + f"{self.seed % 16**12:012x}"
        low = int(schema.get("minLength", 0))
        high = schema.get("maxLength")
        size = {"title": 6, "name": 3, "summary": 30, "description": 20, "headline": 8}.get(name.lower(), 8)
        text = self._phrase(name, size)
        if name.lower() in ("title", "headline", "name"):
            text = text.title()
        while len(text) < low:
            text = f"{text} {text}".strip() or "x" * low
        if high is not None:
            text = text[: int(high)].rstrip() or "x" * min(int(high), max(low, 1))
        return text

    def _integer(self, schema: dict[str, Any], name: str, depth: int) -> int:
        low, high = _bounds(schema, integer=True)
        value = low + (self.seed + digest(name)) % 10 if low is not None else (self.seed + digest(name)) % 10 + 1
        if high is not None:
            value = min(value, high)
        multiple = schema.get("multipleOf")
        if multiple:
            value = int(value // multiple * multiple)
        return int(value)

    def _number(self, schema: dict[str, Any], name: str, depth: int) -> float:
        low, high = _bounds(schema, integer=False)
        value = float(low if low is not None else 0) + ((self.seed + digest(name)) % 100) / 100
        if high is not None:
            value = min(value, float(high))
        return value

    def _boolean(self, schema: dict[str, Any], name: str, depth: int) -> bool:
        return bool((self.seed + digest(name)) % 2)

    def _null(self, schema: dict[str, Any], name: str, depth: int) -> None:
        return None


def _bounds(schema: dict[str, Any], *, integer: bool) -> tuple[Any, Any]:
    step = 1 if integer else 1e-6
    low = schema.get("minimum")
    if schema.get("exclusiveMinimum") is not None:
        low = schema["exclusiveMinimum"] + step
    high = schema.get("maximum")
    if schema.get("exclusiveMaximum") is not None:
        high = schema["exclusiveMaximum"] - step
    if integer:
        low = int(-(-low // 1)) if low is not None else None
        high = int(high // 1) if high is not None else None
    return low, high


def _distinct(value: Any, index: int) -> Any:
    if isinstance(value, str):
        return f"{value} {index + 1}"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value + index
    return value


def png_bytes(prompt: str, size: int = 64) -> bytes:
    """A real PNG: a two-colour gradient whose colours come from the prompt."""
    seed = digest(prompt)
    r, g, b = (seed >> 16) & 255, (seed >> 8) & 255, seed & 255
    rows = []
    for y in range(size):
        shade = y * 255 // max(1, size - 1)
        pixel = bytes(((r + shade) % 256, (g + shade // 2) % 256, (b + 255 - shade) % 256))
        rows.append(b"\x00" + pixel * size)
    raw = b"".join(rows)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
