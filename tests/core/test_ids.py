"""Ids made from batches of the kernel's random bytes: real UUID4s, never repeated, not across a fork."""

from __future__ import annotations

import copy
import os
import pickle
import uuid

import pytest

from flow_engine.ids import new_id


def test_ids_are_version_4_rfc_4122_uuids():
    for _ in range(600):  # more than one batch of 256
        value = new_id()
        assert isinstance(value, uuid.UUID)
        assert value.version == 4 and value.variant == uuid.RFC_4122
        assert uuid.UUID(str(value)) == value


def test_ids_are_whole_uuid_objects():
    """Made without uuid.UUID's __init__: everything its __init__ sets must still be there."""
    value = new_id()
    same = uuid.UUID(str(value))
    assert hash(value) == hash(same) and {value: 1}[same] == 1
    assert value.is_safe is same.is_safe is uuid.SafeUUID.unknown
    assert pickle.loads(pickle.dumps(value)) == value and copy.deepcopy(value) == value
    with pytest.raises(TypeError):  # immutable, like any UUID
        value.int = 0  # type: ignore[misc]


def test_ids_do_not_repeat():
    ids = {new_id() for _ in range(10_000)}
    assert len(ids) == 10_000


def test_a_forked_child_does_not_hand_out_its_parents_next_ids():
    new_id()  # a batch is in the buffer, with unused ids, when the process forks
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read)
        os.write(write, b"".join(new_id().bytes for _ in range(5)))
        os._exit(0)
    os.close(write)
    child_bytes = b""
    while chunk := os.read(read, 4096):
        child_bytes += chunk
    os.close(read)
    os.waitpid(pid, 0)
    child = {uuid.UUID(bytes=child_bytes[i : i + 16]) for i in range(0, len(child_bytes), 16)}
    parent = {new_id() for _ in range(5)}
    assert len(child) == 5 and not child & parent
