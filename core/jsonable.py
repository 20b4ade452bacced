"""Turning inputs and outputs (pydantic models, datetimes, paths...) into JSON-safe values for storage."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic_core import to_jsonable_python


def to_jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return to_jsonable_python(value, fallback=repr)


def describe_error(exc: BaseException) -> str:
    """``Type: message`` — what a person reads in ``flow show`` and on the run row."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
