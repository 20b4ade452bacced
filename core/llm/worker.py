"""An LLM worker process: litellm calls made here on behalf of the engine's process.

``python -m flow_engine.llm.worker SOCKET_PATH`` imports litellm (with the engine's settings, from the
environment it inherited), listens on a Unix socket, prints ``READY`` and serves every connection
(one per event loop of the engine's process) until its standard input closes, which happens when the
engine's process exits, however it exits. Why: litellm spends 2-6 ms of CPU per call; with hundreds of
calls in flight that CPU is the flows' process's whole budget, on one core. Here it runs on another.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from typing import Any

from . import wire
from .redact import call_secrets, known_secrets, secrets_in_params

KEPT_HIDDEN = ("custom_llm_provider", "response_cost", "model_id")  # of litellm's _hidden_params


async def _serve_connection(litellm: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    calls: dict[int, asyncio.Task[None]] = {}

    async def call(request_id: int, kind: str, kwargs: dict[str, Any]) -> None:
        fn = litellm.acompletion if kind == "completion" else litellm.aimage_generation
        limit = kwargs.get("timeout")
        limit = float(limit) if isinstance(limit, int | float) else None
        try:
            # the HTTP client's timeout bounds each read, not the whole answer (as in calls.py); litellm's
            # debug log, if turned on here, blanks this call's key and header values (as in calls.py)
            with call_secrets(lambda: known_secrets(*secrets_in_params(kwargs))):
                async with asyncio.timeout(limit):
                    response = await fn(**kwargs)
            hidden = dict(getattr(response, "_hidden_params", None) or {})
            keep = {k: hidden[k] for k in KEPT_HIDDEN if k in hidden}
            answer: tuple[Any, ...] = (request_id, wire.OK, response.model_dump(), keep)
        except asyncio.CancelledError:
            return
        except TimeoutError as exc:  # asyncio's has no message
            said = exc if str(exc) or limit is None else TimeoutError(f"no answer within {limit:g} s")
            answer = (request_id, wire.ERROR, wire.error_info(said, _told(said, kwargs, limit)))
        except Exception as exc:
            answer = (request_id, wire.ERROR, wire.error_info(exc, _told(exc, kwargs, limit)))
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
            elif message[0] == wire.PING:
                writer.write(wire.encode((message[1], wire.OK, None, None)))
            elif message[0] == wire.CANCEL and message[1] in calls:
                calls[message[1]].cancel()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass  # that event loop of the engine's process has closed
    finally:
        for task in list(calls.values()):
            task.cancel()
        writer.close()


def _told(exc: BaseException, kwargs: dict[str, Any], limit: float | None) -> tuple[str, int | None, str]:
    """The failure classified here, where its exception chain is (the caller gets only this)."""
    from .failures import classify

    failure = classify(exc, kwargs.get("api_base"), limit or 0)
    return failure.kind, failure.http_status, failure.text


async def serve(socket_path: str) -> None:
    from .loader import load_litellm

    litellm = load_litellm()
    await _warm_up(litellm)
    server = await asyncio.start_unix_server(
        lambda r, w: _serve_connection(litellm, r, w), path=socket_path, limit=2**24
    )
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    print("READY", flush=True)
    os.dup2(2, 1)  # from now on anything printed goes to stderr: nobody reads the stdout pipe any more
    try:
        await stdin.read()  # returns at EOF: the engine's process has exited or let this one go
    finally:
        server.close()


async def _warm_up(litellm: Any) -> None:
    """One call answered by litellm itself (``mock_response``: no network) before saying READY: a
    worker's first real call would otherwise pay litellm's lazy imports (~0.25 s here, against ~0.05 s),
    enough to miss a short request timeout."""
    with contextlib.suppress(Exception):
        await litellm.acompletion(
            model="openai/flow-engine-warm-up",
            messages=[{"role": "user", "content": "warm up"}],
            mock_response="ready",
        )


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
