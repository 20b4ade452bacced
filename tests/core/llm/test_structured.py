"""Pieces of the structured-output logic that need no server."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from flow_engine.llm.calls import LLMRequestError
from flow_engine.llm.structured import (
    _is_rejection,
    _with_schema,
    format_errors,
    parse_answer,
    schema_instruction,
)


class Point(BaseModel):
    x: int
    y: int = 0


@pytest.mark.parametrize(
    "text",
    ['{"x": 1}', '```json\n{"x": 1}\n```', '```\n{"x": 1}\n```', 'Sure:\n{"x": 1}\nDone.', '  {"x": 1}  '],
)
def test_parse_answer_tolerates_fences_and_prose(text):
    assert parse_answer(Point, text) == Point(x=1)


def test_parse_answer_reports_schema_errors_over_json_errors():
    with pytest.raises(ValidationError) as info:
        parse_answer(Point, 'Here: {"y": "nope"} ok')
    assert {e["loc"] for e in info.value.errors()} == {("x",), ("y",)}
    with pytest.raises(ValidationError, match="Invalid JSON"):
        parse_answer(Point, "no json at all")


def test_format_errors_lists_each_field():
    with pytest.raises(ValidationError) as info:
        Point.model_validate({"y": "a"})
    assert format_errors(info.value).splitlines() == [
        "- x: Field required",
        "- y: Input should be a valid integer, unable to parse string as an integer",
    ]


def test_the_schema_instruction_is_added_once():
    messages = [{"role": "user", "content": "hi"}]
    once = _with_schema(messages, Point)
    assert once[0] == {"role": "system", "content": schema_instruction(Point)}
    assert _with_schema(once, Point) == once
    assert messages == [{"role": "user", "content": "hi"}]  # not mutated


def error(status: int | None, message: str, transient: bool = False) -> LLMRequestError:
    return LLMRequestError(message, status_code=status, transient=transient, attempts=1)


def test_what_counts_as_a_rejection_of_the_structured_request():
    assert _is_rejection(error(400, "whatever"))
    assert _is_rejection(error(422, "unprocessable"))
    assert _is_rejection(error(None, "response_format json_schema is not supported"))
    assert _is_rejection(error(500, "unknown field response_format"))
    assert not _is_rejection(error(500, "overloaded", transient=True))
    assert not _is_rejection(error(401, "invalid key"))
