"""Server-Sent Events: a run page's live part, re-rendered whenever the stored run moves on.

The server polls the store (it never holds a lock, and it sees runs of any process or worker) and
sends an ``update`` event carrying the new HTML only when something changed; ``end`` when the run
has ended. A comment line every ``keepalive`` seconds keeps proxies from closing the connection.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio

from flow_engine.plugin import RunStore

from . import pages


def event(name: str, data: str) -> str:
    lines = "\n".join(f"data: {line}" for line in data.split("\n"))
    return f"event: {name}\n{lines}\n\n"


async def run_events(
    store: RunStore,
    run_id: uuid.UUID,
    render: Callable[[pages.RunView], str],
    stale_before: Callable[[], Any],
    *,
    interval: float,
    keepalive: float = 15.0,
) -> AsyncIterator[str]:
    def read(previous: Any) -> tuple[Any, str | None, pages.RunView | None]:
        """(signature, status, the view when the signature changed); status None: no such run."""
        run = store.get_run(run_id)
        if run is None:
            return None, None, None
        before = stale_before()
        status = pages.shown_status(run, before)
        signature = pages.live_signature(run, store.list_steps(run_id), status)
        if signature == previous:
            return signature, status, None
        return signature, status, pages.run_view(store, run, before)

    sent: Any = None
    last_sent = time.monotonic()
    yield "retry: 2000\n\n"
    while True:
        signature, status, view = await anyio.to_thread.run_sync(read, sent)
        if status is None:
            yield event("end", "gone")
            return
        if view is not None:
            sent = signature
            last_sent = time.monotonic()
            yield event("update", render(view))
        if status not in pages.LIVE:
            yield event("end", status)
            return
        if time.monotonic() - last_sent > keepalive:
            last_sent = time.monotonic()
            yield ": keepalive\n\n"
        await anyio.sleep(interval)
