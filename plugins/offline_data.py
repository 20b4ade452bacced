"""Deterministic made-up answers for the offline model: text from the prompt, JSON for a schema, a PNG.

No fake-data library fits here: they generate from Python classes and random seeds, while the offline
model only sees a JSON schema and must answer the same prompt the same way every time.
"""

from __future__ import annotations

import hashlib
import math
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


MAX_DEPTH = 6  # below this, optional parts are left out so recursive models stay finite


class SchemaFaker:
    """Builds an instance of a JSON schema (the subset pydantic emits), deterministically."""

    def __init__(self, schema: dict[str, Any], prompt: str):
        self.root = schema
        self.words = subject_words(prompt)
        self.seed = digest(prompt)

    def build(self) -> Any:
        return self.value(self.root, "value", 0, "$")

    def _resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        ref = schema.get("$ref")
        seen: set[str] = set()
        while ref and ref not in seen:
            seen.add(ref)
            target: Any = self.root
            for part in ref.lstrip("#/").split("/"):
                target = target[part]
            schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
            ref = target.get("$ref")
        return schema

    def _pick(self, path: str, size: int) -> int:
        return (self.seed + digest(path)) % max(1, size)

    def _phrase(self, path: str, count: int) -> str:
        words = [w for w in self.words if w.lower() not in _STOP] or self.words
        start = self._pick(path, len(words))
        picked = [words[(start + i) % len(words)] for i in range(count)]
        return " ".join(picked)

    def value(self, schema: dict[str, Any], name: str, depth: int, path: str) -> Any:
        """A value for ``schema``; ``name`` is the field's name, ``path`` where it sits (for variety)."""
        schema = self._resolve(schema)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return schema["enum"][self._pick(path, len(schema["enum"]))]
        for key in ("anyOf", "oneOf"):
            if key in schema:
                options = [self._resolve(o) for o in schema[key]]
                real = [o for o in options if o.get("type") != "null"]
                if not real or (depth >= MAX_DEPTH and len(real) < len(options)):
                    return None
                return self.value(real[0], name, depth, path)
        if "allOf" in schema:
            merged: dict[str, Any] = {}
            for part in schema["allOf"]:
                merged.update(self._resolve(part))
            return self.value(
                {**merged, **{k: v for k, v in schema.items() if k != "allOf"}}, name, depth, path
            )
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind is None:
            if "properties" in schema or "additionalProperties" in schema:
                kind = "object"
            elif "items" in schema or "prefixItems" in schema:
                kind = "array"
            elif "default" in schema:
                return schema["default"]
            else:
                kind = "string"
        return getattr(self, f"_{kind}", self._string)(schema, name, depth, path)

    def _object(self, schema: dict[str, Any], name: str, depth: int, path: str) -> Any:
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        result = {}
        for prop, sub in props.items():
            if prop in required or depth < 3:
                result[prop] = self.value(sub, prop, depth + 1, f"{path}.{prop}")
        extra = schema.get("additionalProperties")
        if not props and extra is not False:
            low = int(schema.get("minProperties", 0))
            high = schema.get("maxProperties")
            count = max(low, 1 if depth < MAX_DEPTH else 0)
            if high is not None:
                count = min(count, int(high))
            keys = schema.get("propertyNames") or {"type": "string", "maxLength": 40}
            value_schema = extra if isinstance(extra, dict) else {"type": "string"}
            for i in range(count):
                key = self.value(keys, "key", depth + 1, f"{path}<key{i}>")
                plain = isinstance(key, str) and not {"enum", "const", "pattern"} & set(keys)
                key = str(key).lower() if plain else str(key)
                if key in result:
                    key = f"{key}{i}"
                result[key] = self.value(value_schema, name, depth + 1, f"{path}[{key}]")
        return result

    def _array(self, schema: dict[str, Any], name: str, depth: int, path: str) -> Any:
        low = int(schema.get("minItems", 0))
        high = schema.get("maxItems")
        prefix = schema.get("prefixItems")
        if prefix:  # tuples
            return [self.value(s, name, depth + 1, f"{path}[{i}]") for i, s in enumerate(prefix)]
        items = schema.get("items", {"type": "string"})
        if isinstance(items, list):  # old-style tuples
            return [self.value(s, name, depth + 1, f"{path}[{i}]") for i, s in enumerate(items)]
        count = max(low, 3 if depth < 3 else 1 if depth < MAX_DEPTH else 0)
        if high is not None:
            count = min(count, int(high))
        item_schema = self._resolve(items)
        if schema.get("uniqueItems") and "enum" in item_schema:
            options = item_schema["enum"]
            count = max(min(count, len(options)), min(low, len(options)))
            start = self._pick(path, len(options))
            return [options[(start + i) % len(options)] for i in range(count)]
        values = [self.value(items, name, depth + 1, f"{path}[{i}]") for i in range(count)]
        if schema.get("uniqueItems"):
            seen: list[Any] = []
            for i, v in enumerate(values):
                while v in seen:
                    v = _distinct(v, i)
                seen.append(v)
            values = seen
        return values

    def _string(self, schema: dict[str, Any], name: str, depth: int, path: str) -> str:
        fmt = schema.get("format")
        base = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=self.seed % 500_000)
        formats = {
            "date-time": base.isoformat(),
            "date": base.date().isoformat(),
            "time": base.time().isoformat(),
            "duration": f"PT{1 + self.seed % 90}M",
            "email": "offline@example.com",
            "uuid": "00000000-0000-4000-8000-" + f"{self.seed % 16**12:012x}",
            "ipv4": f"192.0.2.{1 + self.seed % 250}",
            "ipv6": f"2001:db8::{1 + self.seed % 9999:x}",
            "hostname": "offline.example.com",
        }
        lowered = name.lower()
        plain = fmt is None and "pattern" not in schema and int(schema.get("maxLength", 99)) >= 40
        if plain and ("email" in lowered or lowered.endswith("url")):
            fmt = "email" if "email" in lowered else "uri"  # plausible values for plain str fields
        if fmt in formats:
            return formats[fmt]
        if fmt in ("uri", "url", "iri"):
            return f"https://example.com/offline/{self._phrase(path, 2).replace(' ', '-').lower()}"
        low = int(schema.get("minLength", 0))
        high = schema.get("maxLength")
        pattern = schema.get("pattern")
        if pattern:
            matched = sample_pattern(pattern, self.seed + digest(path), low, high)
            if matched is not None:
                return matched
        size = {"title": 6, "name": 3, "summary": 30, "description": 20, "headline": 8}.get(lowered, 8)
        text = self._phrase(path, size)
        if lowered in ("title", "headline", "name"):
            text = text.title()
        while len(text) < low:
            text = f"{text} {text}".strip() or "x" * low
        if high is not None:
            text = text[: int(high)].rstrip()
            if len(text) < low:
                text = (text + "x" * low)[: int(high)]
        return text

    def _integer(self, schema: dict[str, Any], name: str, depth: int, path: str) -> int:
        low, high = _bounds(schema, integer=True)
        offset = self._pick(path, 10)
        value = low + offset if low is not None else offset + 1
        if high is not None:
            value = min(value, high)
        multiple = schema.get("multipleOf")
        if multiple:
            start = math.ceil(low / multiple) if low is not None else 1
            value = (start + offset % 3) * multiple
            if high is not None and value > high:
                value = math.floor(high / multiple) * multiple
        return int(value)

    def _number(self, schema: dict[str, Any], name: str, depth: int, path: str) -> float:
        low, high = _bounds(schema, integer=False)
        multiple = schema.get("multipleOf")
        if multiple:
            start = math.ceil(low / multiple) if low is not None else 1
            k = start + self._pick(path, 3)
            if high is not None and k * multiple > high:
                k = math.floor(high / multiple)
            return float(k * multiple)
        value = float(low if low is not None else 0) + self._pick(path, 100) / 100
        if high is not None:
            value = min(value, float(high))
        return value

    def _boolean(self, schema: dict[str, Any], name: str, depth: int, path: str) -> bool:
        return bool(self._pick(path, 2))

    def _null(self, schema: dict[str, Any], name: str, depth: int, path: str) -> None:
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
        low = math.ceil(low) if low is not None else None
        high = math.floor(high) if high is not None else None
    return low, high


def _distinct(value: Any, index: int) -> Any:
    if isinstance(value, str):
        return f"{value} {index + 1}"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value + index + 1
    return value


# -- strings matching a regular expression (JSON schema ``pattern``) ----------------------------------
_CATEGORY_CHARS = {
    "CATEGORY_DIGIT": "0123456789",
    "CATEGORY_NOT_DIGIT": "abcxyz",
    "CATEGORY_WORD": "abcdefghijklmnopqrstuvwxyz",
    "CATEGORY_NOT_WORD": "-",
    "CATEGORY_SPACE": " ",
    "CATEGORY_NOT_SPACE": "abcxyz",
}
_ANY_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789"


def sample_pattern(pattern: str, seed: int, min_length: int = 0, max_length: int | None = None) -> str | None:
    """A string that ``re.search(pattern, ...)`` matches (within the length bounds), or None."""
    try:
        from re import _parser as sre_parse  # type: ignore[attr-defined]

        tree = sre_parse.parse(pattern)
        compiled = re.compile(pattern)
    except Exception:
        return None
    for extra in (0, 1, 2, 4, 8, 16, 32, 64):
        try:
            text = _Sampler(seed, extra).emit(tree)
        except _Unsupported:
            return None
        if len(text) < min_length and extra < 64:
            continue
        if (
            (max_length is None or len(text) <= max_length)
            and len(text) >= min_length
            and compiled.search(text)
        ):
            return text
        if max_length is not None and len(text) > max_length:
            return None
    return None


class _Unsupported(Exception):
    pass


class _Sampler:
    def __init__(self, seed: int, extra: int):
        self.seed = seed
        self.extra = extra
        self.groups: dict[int, str] = {}
        self.n = 0

    def _choice(self, options: str) -> str:
        self.n += 1
        return options[(self.seed + self.n) % len(options)]

    def emit(self, tree: Any) -> str:
        return "".join(self.node(op, av) for op, av in tree)

    def node(self, op: Any, av: Any) -> str:
        name = str(op)
        if name == "LITERAL":
            return chr(av)
        if name == "NOT_LITERAL":
            return "a" if chr(av) != "a" else "b"
        if name == "ANY":
            return self._choice(_ANY_CHARS)
        if name == "IN":
            return self._in(av)
        if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, high, sub = av
            count = low + self.extra
            if str(high) != "MAXREPEAT":
                count = min(count, int(high))
            return "".join(self.emit(sub) for _ in range(count))
        if name == "SUBPATTERN":
            group, _add, _del, sub = av
            text = self.emit(sub)
            if group is not None:
                self.groups[group] = text
            return text
        if name == "ATOMIC_GROUP":
            return self.emit(av)
        if name == "BRANCH":
            _, branches = av
            return self.emit(branches[(self.seed + self.n) % len(branches)])
        if name == "GROUPREF":
            return self.groups.get(av, "")
        if name in ("AT", "ASSERT", "ASSERT_NOT"):
            return ""
        if name == "CATEGORY":
            return self._choice(_CATEGORY_CHARS.get(str(av), "a"))
        raise _Unsupported(name)

    def _in(self, items: list[Any]) -> str:
        negate = any(str(op) == "NEGATE" for op, _ in items)
        chars = ""
        for op, av in items:
            name = str(op)
            if name == "LITERAL":
                chars += chr(av)
            elif name == "RANGE":
                chars += "".join(chr(c) for c in range(av[0], min(av[1], av[0] + 25) + 1))
            elif name == "CATEGORY":
                chars += _CATEGORY_CHARS.get(str(av), "a")
        if negate:
            options = "".join(c for c in _ANY_CHARS + "-_ " if c not in chars)
            return self._choice(options or "~")
        return self._choice(chars or "a")


def png_bytes(prompt: str, size: int = 64, height: int | None = None) -> bytes:
    """A real PNG, ``size`` wide and ``height`` (or ``size``) high: a gradient coloured by the prompt."""
    width, height = size, height or size
    seed = digest(prompt)
    r, g, b = (seed >> 16) & 255, (seed >> 8) & 255, seed & 255
    rows = []
    for y in range(height):
        shade = y * 255 // max(1, height - 1)
        pixel = bytes(((r + shade) % 256, (g + shade // 2) % 256, (b + 255 - shade) % 256))
        rows.append(b"\x00" + pixel * width)
    raw = b"".join(rows)

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
