"""An LLM worker process: litellm calls made here on behalf of the engine's process.

``python -m flow_engine.llm.worker SOCKET_PATH`` imports litellm (with the engine's settings, from the
environment it inherited), listens on a Unix socket, prints ``READY`` and serves every connection
(one per event loop of the engine's process) until its standard input closes, which happens when the
engine's process exits, however it exits. Why: litellm spends 2-6 ms of CPU per call and its heap
makes garbage collections long; hundreds of concurrent calls in the flows' process hold that
process's event loop for seconds (docs/performance.md). Here they hold only this process's loop.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from . import wire


async def _serve_connection(litellm: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    calls: dict[int, asyncio.Task[None]] = {}

    async def call(request_id: int, kind: str, kwargs: dict[str, Any]) -> None:
        fn = litellm.acompletion if kind == "completion" else litellm.aimage_generation
        try:
            response = await fn(**kwargs)
            hidden = dict(getattr(response, "_hidden_params", None) or {})
            keep = {k: hidden[k] for k in ("custom_llm_provider", "response_cost", "model_id") if k in hidden}
            answer: tuple[Any, ...] = (request_id, wire.OK, response.model_dump(), keep)
        except asyncio.CancelledError:
            return
        except Exception as exc:
            answer = (request_id, wire.ERROR, wire.error_info(exc))
        finally:
            calls.pop(request_id, None)
        if not writer.is_closing():
            writer.write(wire.encode(answer))

    try:
        while True:
            message = await wire.receive(reader)
            if message[0] == wire.CALL:
                _, request_id, kind, kwargs = message
                calls[request_id] = asyncio.ensure_future(call(request_id, kind, kwargs))
            elif message[0] == wire.CANCEL and message[1] in calls:
                calls[message[1]].cancel()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass  # that event loop of the engine's process has closed
    finally:
        for task in list(calls.values()):
            task.cancel()
        writer.close()


async def serve(socket_path: str) -> None:
    from .loader import load_litellm

    litellm = load_litellm()
    server = await asyncio.start_unix_server(
        lambda r, w: _serve_connection(litellm, r, w), path=socket_path, limit=2**24
    )
    loop = asyncio.get_running_loop()
    parent_gone = loop.create_future()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    print("READY", flush=True)
    os.dup2(2, 1)  # from now on anything printed goes to stderr: nobody reads the stdout pipe any more

    async def watch_parent() -> None:
        await stdin.read()  # returns at EOF: the engine's process has exited
        parent_gone.set_result(None)

    watcher = asyncio.ensure_future(watch_parent())
    try:
        await parent_gone
    finally:
        watcher.cancel()
        server.close()


NICENESS = 10  # the flows' process, not its workers, gets a core first when both want one


def main() -> None:
    import signal

    # Ctrl-C in a terminal reaches the whole process group: the engine's process handles it, and this
    # one exits when that one does, without a traceback of its own
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        os.nice(NICENESS)
    except (AttributeError, OSError):  # pragma: no cover - not on this platform, or not allowed
        pass
    asyncio.run(serve(sys.argv[1]))


if __name__ == "__main__":
    main()
