"""Turning inputs and outputs (pydantic models, datetimes, paths...) into JSON-safe values for storage.

``storable`` is the one rule of what a run may store, the same on every backend: JSON values (dict
with text keys, list, str, int, finite float, bool, None), pydantic models, dataclasses and what
pydantic serialises losslessly (tuple -> list, datetime, date, UUID, Path, Enum, Decimal). Refused,
with the place named: bytes, sets, arbitrary objects, NaN/Infinity, text holding NUL ("\\x00") or a
lone surrogate ("\\ud800"), and nesting deeper than ``MAX_DEPTH`` - values some backends cannot store
or JSON cannot read back.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import math
import os
import uuid
from typing import Any

from pydantic import BaseModel
from pydantic_core import to_jsonable_python

MAX_DEPTH = 100  # a stored value nests at most this deep


class NotStorable(ValueError):
    """A value a run cannot store; ``where`` is its place (``outputs.items[2]``), ``why`` the reason."""

    def __init__(self, where: str, why: str):
        self.where = where if len(where) <= 80 else f"{where[:40]}...{where[-20:]}"
        self.why = why
        super().__init__(f"{self.where}: {why}")


def to_jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return to_jsonable_python(value, fallback=repr)


_CONVERTED = (dt.datetime, dt.date, dt.time, dt.timedelta, uuid.UUID, decimal.Decimal, os.PathLike)


def storable(value: Any, where: str = "value") -> Any:
    """``value`` as JSON to store, or :class:`NotStorable` naming the first part that cannot be."""
    return _storable(value, where, 0)


# A value's place: the name given, or (its container's place, its key or index), spelt out only for
# an error (``outputs.items[2]``): most values are stored, and naming every part would cost more.
Place = str | tuple[Any, str | int]


def _spelt(where: Place) -> str:
    if isinstance(where, str):
        return where
    parent, key = where
    return f"{_spelt(parent)}[{key}]" if isinstance(key, int) else f"{_spelt(parent)}.{key}"


def _storable(value: Any, where: Place, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise NotStorable(_spelt(where), f"nested more than {MAX_DEPTH} levels deep")
    exact = type(value)
    if exact is str:  # the common cases first: text, and dicts of it
        _check_text(value, where)
        return value
    if exact is dict:
        return _storable_dict(value, where, depth)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            why = f"{value} is not a finite number (JSON has no NaN or Infinity)"
            raise NotStorable(_spelt(where), why)
        return float(value)
    if isinstance(value, str):
        _check_text(value, where)
        return str(value)
    if isinstance(value, enum.Enum):
        return _storable(value.value, where, depth)
    if isinstance(value, dict):
        return _storable_dict(value, where, depth)
    if isinstance(value, list | tuple):
        return [_storable(item, (where, i), depth + 1) for i, item in enumerate(value)]
    if isinstance(value, BaseModel):
        return _storable(value.model_dump(mode="python"), where, depth)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return _storable(fields, where, depth)
    if isinstance(value, _CONVERTED):
        return to_jsonable_python(value)
    kind = type(value).__name__
    if isinstance(value, bytes | bytearray | memoryview):
        why = f"{kind} cannot be stored as JSON; return text (decode it) or base64"
    elif isinstance(value, set | frozenset):
        why = f"a {kind} has no order JSON can keep; return a sorted list"
    else:
        why = f"a {kind} object cannot be stored; return JSON values, a pydantic model or a dataclass"
    raise NotStorable(_spelt(where), why)


def _storable_dict(value: dict[Any, Any], where: Place, depth: int) -> dict[str, Any]:
    out = {}
    for key, item in value.items():
        if isinstance(key, enum.Enum):
            key = key.value
        if not isinstance(key, str):
            why = f"key {key!r} is a {type(key).__name__}; JSON keys are text"
            raise NotStorable(_spelt(where), why)
        _check_text(key, where, key)
        out[key] = _storable(item, (where, key), depth + 1)
    return out


def _check_text(text: str, where: Place, key: str | None = None) -> None:
    """Refuse text a database cannot hold (``key``: the text is that key of ``where``)."""
    if "\x00" in text:
        why = 'text holds a NUL character ("\\x00"), which databases refuse'
    else:
        try:
            text.encode("utf-8")
            return
        except UnicodeEncodeError:
            why = "text holds a lone surrogate (not valid Unicode)"
    place = _spelt(where) if key is None else f"{_spelt(where)} key {key!r}"
    raise NotStorable(place, why) from None


def storable_inputs(value: Any, owner: str, error: type[Exception]) -> None:
    """Refuse inputs a run could not store (same rule as outputs) with ``error(owner, problems)``."""
    try:
        storable(value, "inputs")
    except NotStorable as exc:
        where = exc.where.removeprefix("inputs").lstrip(".")
        raise error(owner, [{"loc": (where,) if where else (), "msg": exc.why}]) from None


def describe_error(exc: BaseException) -> str:
    """``Type: message`` — what a person reads in ``flow show`` and on the run row."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
