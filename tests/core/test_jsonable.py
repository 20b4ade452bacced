"""What a run may store, and the place a refusal names (spelt out only when a value is refused)."""

from __future__ import annotations

import math

import pytest

from flow_engine.jsonable import NotStorable, storable


@pytest.mark.parametrize(
    ("value", "where", "why"),
    [
        ({"items": [1, {"k": b"x"}]}, "outputs.items[1].k", "bytes cannot be stored"),
        ({"a": {"b": [math.nan]}}, "outputs.a.b[0]", "not a finite number"),
        ({"a": ["ok", "x\x00"]}, "outputs.a[1]", "NUL character"),
        ({"a": {"bad\ud800": 1}}, "outputs.a key 'bad\\ud800'", "lone surrogate"),
        ({"a": {1: "one"}}, "outputs.a", "key 1 is a int"),
        ([{"s": {3}}], "outputs[0].s", "no order JSON can keep"),
    ],
)
def test_a_refusal_names_the_place_of_the_part_refused(value, where, why):
    with pytest.raises(NotStorable) as refused:
        storable(value, "outputs")
    assert refused.value.where == where and why in refused.value.why


def test_json_values_come_back_as_they_are():
    value = {"text": "héllo", "n": 3, "x": 1.5, "ok": True, "none": None, "list": [{"k": ["v"]}]}
    assert storable(value) == value
    assert storable(("a", 1)) == ["a", 1]
