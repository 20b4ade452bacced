"""The worker process's side of a call (``flow_engine.llm.worker``), served here on a Unix socket."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from flow_engine.llm import wire, worker
from flow_engine.llm.loader import guard_litellm_logs

KEY = "az-0123456789abcdef0123456789abcdef"  # looks like no known key pattern: only the call knows it
HEADER = "tenant-secret-9f8e7d6c5b4a"


class _LoggingLitellm:
    """litellm as far as the worker uses it: its debug log prints the request, headers included."""

    async def acompletion(self, **kwargs: Any) -> Any:
        logging.getLogger("LiteLLM").debug("POST Request Sent from LiteLLM: %s", kwargs)
        raise RuntimeError("no answer here")


async def test_litellm_debug_log_in_a_worker_blanks_the_calls_key_and_headers(tmp_path: Path, caplog):
    guard_litellm_logs()
    path = str(tmp_path / "worker.sock")
    server = await asyncio.start_unix_server(
        lambda r, w: worker._serve_connection(_LoggingLitellm(), r, w), path=path
    )
    kwargs = {"model": "azure/gpt", "messages": [], "api_key": KEY, "extra_headers": {"X-Tenant": HEADER}}
    try:
        reader, writer = await asyncio.open_unix_connection(path)
        with caplog.at_level(logging.DEBUG, logger="LiteLLM"):
            writer.write(wire.encode((wire.CALL, 1, "completion", kwargs)))
            answer = await asyncio.wait_for(wire.receive(reader), 10)
        writer.close()
    finally:
        server.close()
    assert answer[:2] == (1, wire.ERROR)
    [record] = [r for r in caplog.records if r.name == "LiteLLM"]
    assert "POST Request Sent" in record.getMessage() and "X-Tenant" in record.getMessage()
    assert KEY not in caplog.text and HEADER not in caplog.text
