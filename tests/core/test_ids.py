"""Ids are random version-4 UUIDs that do not repeat, in threads and across a fork."""

from __future__ import annotations

import os
import sys
import threading
import uuid

import pytest

from flow_engine.ids import new_id


def test_ids_are_version_4_rfc_4122_uuids():
    for _ in range(1_000):  # across several batches of random bits
        value = new_id()
        assert isinstance(value, uuid.UUID)
        assert value.version == 4 and value.variant == uuid.RFC_4122


def test_ids_do_not_repeat():
    ids = {new_id() for _ in range(10_000)}
    assert len(ids) == 10_000


def test_threads_drawing_at_once_get_different_ids():
    found: list[list[uuid.UUID]] = [[] for _ in range(16)]
    failed: list[BaseException] = []

    def draw(into: list[uuid.UUID]) -> None:
        try:
            into.extend(new_id() for _ in range(1_000))
        except BaseException as error:  # an exception in a thread does not fail the test by itself
            failed.append(error)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch between almost any two bytecodes: races show up
    try:
        for _ in range(10):  # rounds: a race that shows once in three is caught
            threads = [threading.Thread(target=draw, args=(into,)) for into in found]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert failed == []
    assert len({i for ids in found for i in ids}) == 10 * 16 * 1_000


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork on this platform")
def test_a_forked_child_does_not_repeat_its_parents_ids():
    new_id()  # the parent holds drawn bits when it forks (as a Celery worker's parent does)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        os.close(read)
        os.write(write, "".join(new_id().hex for _ in range(50)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        text = pipe.read()
    os.waitpid(pid, 0)
    child = {uuid.UUID(text[i : i + 32]) for i in range(0, len(text), 32)}
    parent = {new_id() for _ in range(50)}
    assert len(child) == 50 and not child & parent
