"""Ids are random version-4 UUIDs that do not repeat."""

from __future__ import annotations

import uuid

from flow_engine.ids import new_id


def test_ids_are_version_4_rfc_4122_uuids():
    value = new_id()
    assert isinstance(value, uuid.UUID)
    assert value.version == 4 and value.variant == uuid.RFC_4122


def test_ids_do_not_repeat():
    ids = {new_id() for _ in range(10_000)}
    assert len(ids) == 10_000
