"""LLM calls to network providers made in worker processes (``FLOW_ENGINE_LLM_PROCESSES=N``).

Why: litellm spends 2-6 ms of CPU on every call and keeps a heap that makes the garbage collector's
full passes long. With hundreds of calls in flight in the flows' process, that work lands on its
event loop in bursts: in the 500-flow benchmark, litellm called directly holds the loop for 1-2 s at
a time (docs/performance.md). With N worker processes, each running litellm on its own event loop,
the flows' process only sends the request and rebuilds the answer (~0.1 ms), and litellm's CPU runs
on other cores. Calls to in-process providers (the offline model, a test's scripted model) stay in
the flows' process: they are plugins of it, and a round trip would cost more than they do.

The processes are started on first use and shared by every event loop of this process; each loop
opens its own connection to each of them. They exit when this process does (they watch their standard
input). A failed call comes back as a :class:`RemoteLLMError` with the original exception's class
name, message, HTTP status and headers, so retries, ``Retry-After`` and error messages work as for a
local call. Cancelling the caller cancels the call in the worker.
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import logging
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import threading
import weakref
from typing import Any

from ..errors import ConfigurationError
from . import wire

log = logging.getLogger("flow_engine.llm")

AUTO_START_AT = 16  # "auto": network calls in flight at once that make the workers start
START_TIMEOUT_S = 300.0  # importing litellm takes 1-5 s; far longer on a machine under load
RESULTS_PER_TURN = 5  # answers handed to callers per event-loop iteration (each runs on 0.3-1 ms)


class RemoteLLMError(Exception):
    """A call that failed in a worker process. Its class is named after the original exception's."""

    status_code: int | None = None
    remote_types: tuple[str, ...] = ()
    litellm_response_headers: dict[str, str] | None = None


_error_classes: dict[str, type[RemoteLLMError]] = {}


def remote_error(info: dict[str, Any]) -> RemoteLLMError:
    name = str(info.get("type") or "RemoteLLMError")
    cls = _error_classes.get(name)
    if cls is None:
        cls = _error_classes[name] = type(name, (RemoteLLMError,), {"__module__": __name__})
    exc = cls(info.get("message", ""))
    exc.status_code = info.get("status_code")
    exc.remote_types = tuple(info.get("types") or (name,))
    exc.litellm_response_headers = info.get("headers")
    return exc


def _worker_exited() -> RemoteLLMError:
    return remote_error(
        {
            "type": "APIConnectionError",  # transient: the call is retried on a restarted worker
            "types": ["APIConnectionError"],
            "message": "the LLM worker process exited during the call",
        }
    )


class _Workers:
    """The worker processes: one Unix socket each, in a private temporary folder."""

    def __init__(self, count: int):
        self.count = count
        self.folder = tempfile.mkdtemp(prefix="flow-engine-llm-")
        os.chmod(self.folder, 0o700)
        self.paths = [os.path.join(self.folder, f"{i}.sock") for i in range(count)]
        self.processes = [
            subprocess.Popen(
                [sys.executable, "-m", "flow_engine.llm.worker", path],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for path in self.paths
        ]
        self.started = False  # every worker has imported litellm and listens
        self.error: str | None = None  # why one did not
        self._done = threading.Event()
        threading.Thread(target=self._await_ready, name="flow-engine-llm-start", daemon=True).start()

    def _await_ready(self) -> None:
        for process in self.processes:
            assert process.stdout is not None
            line = process.stdout.readline().strip()
            while line and line != "READY":  # something printed while importing litellm
                line = process.stdout.readline().strip()
            if line != "READY":
                if not line and process.poll() is None:
                    process.wait(5)  # its output ended: it is exiting; wait for its exit code
                self.error = (
                    f"an LLM worker process did not start (exit code {process.poll()}, said {line!r}); "
                    "its error is above on stderr — or set FLOW_ENGINE_LLM_PROCESSES=0 to call litellm "
                    "in this process"
                )
                break
        else:
            self.started = True
        self._done.set()

    def wait_started(self) -> None:
        """Block until every worker has imported litellm and listens (run in a thread)."""
        if not self._done.wait(START_TIMEOUT_S):
            self.error = f"the LLM worker processes did not start within {START_TIMEOUT_S:g} s"
        if self.error is not None:
            raise ConfigurationError(self.error)

    def alive(self) -> bool:
        return all(process.poll() is None for process in self.processes)

    def close(self) -> None:
        for process in self.processes:
            try:
                if process.stdin is not None:
                    process.stdin.close()  # the worker's signal to exit
                process.terminate()
                process.wait(5)
            except Exception:  # pragma: no cover - already gone, or will be killed by the OS
                process.kill()
        shutil.rmtree(self.folder, ignore_errors=True)


class _Turn:
    """How many answers this event-loop iteration has handed over (shared by a loop's connections).

    A worker's answers arrive in bursts (hundreds of calls sent together come back together), and
    each woken caller runs its step's bookkeeping and the next request before it awaits again: woken
    all at once, they would hold the loop for 100 ms and more. Past ``RESULTS_PER_TURN`` the readers
    wait for the next iteration."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.used = 0
        self._reset_scheduled = False

    def _reset(self) -> None:
        self.used = 0
        self._reset_scheduled = False

    async def take(self) -> None:
        while self.used >= RESULTS_PER_TURN:  # noqa: ASYNC110 (waiting for the next iteration is the point)
            await asyncio.sleep(0)  # the reset scheduled below runs first in the next iteration
        self.used += 1
        if not self._reset_scheduled:
            self._reset_scheduled = True
            self.loop.call_soon(self._reset)


class _Connection:
    """One event loop's connection to one worker, and the calls waiting for its answers."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, turn: _Turn):
        self.writer = writer
        self.pending: dict[int, asyncio.Future[tuple[Any, ...]]] = {}
        self.closed = False
        self._turn = turn
        self._reading = asyncio.ensure_future(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                message = await wire.receive(reader)
                future = self.pending.pop(message[0], None)
                if future is not None and not future.done():
                    await self._turn.take()
                    if not future.done():  # its caller may have been cancelled meanwhile
                        future.set_result(message)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            self.closed = True
            for future in self.pending.values():
                if not future.done():
                    future.set_exception(_worker_exited())
            self.pending.clear()


class _LoopPool:
    """One event loop's connections to the workers, used in turn."""

    def __init__(self, workers: _Workers, connections: list[_Connection]):
        self.workers = workers
        self.connections = connections
        self._turn = itertools.cycle(range(len(connections)))
        self._ids = itertools.count(1)

    def usable(self, count: int) -> bool:
        """Still connected to the current workers, and as many as wanted."""
        workers = self.workers
        return workers is _workers and workers.count == count and not any(c.closed for c in self.connections)

    def request(self, kind: str, kwargs: dict[str, Any]) -> tuple[int, bytes]:
        """A new request id and the call's message; raises if ``kwargs`` cannot be pickled."""
        request_id = next(self._ids)
        return request_id, wire.encode((wire.CALL, request_id, kind, kwargs))

    async def call(self, request_id: int, data: bytes) -> tuple[Any, ...]:
        connection = self.connections[next(self._turn)]
        future: asyncio.Future[tuple[Any, ...]] = asyncio.get_running_loop().create_future()
        connection.pending[request_id] = future
        connection.writer.write(data)
        try:
            return await future
        except asyncio.CancelledError:
            connection.pending.pop(request_id, None)
            if not connection.closed:
                connection.writer.write(wire.encode((wire.CANCEL, request_id)))
            raise


_lock = threading.Lock()
_workers: _Workers | None = None
_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopPool] = weakref.WeakKeyDictionary()
_opening: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


def start(count: int) -> _Workers:
    """``count`` workers, started now if need be (another number of them running, one dead, a failed
    start), without waiting for them: the first call then pays for their start-up alongside this
    process's own import of litellm, not after it."""
    global _workers
    with _lock:
        workers = _workers
        if workers is not None and (workers.count != count or workers.error or not workers.alive()):
            workers.close()
            workers = _workers = None
        if workers is None:
            workers = _workers = _Workers(count)
        return workers


def _current_workers(count: int) -> _Workers:
    """The running workers, started if need be, once ready (blocks: run in a thread)."""
    workers = start(count)
    workers.wait_started()
    return workers


def auto_count() -> int:
    """How many workers "auto" starts: two on a small machine, up to four on a large one."""
    return min(4, max(2, (os.cpu_count() or 2) // 2))


_auto_failed = False


_CALLBACK_LISTS = (
    "callbacks",
    "success_callback",
    "failure_callback",
    "input_callback",
    "_async_success_callback",
    "_async_failure_callback",
    "service_callback",
)


def has_callbacks(litellm: Any) -> bool:
    """Has this process's code given litellm callbacks (Langfuse, a custom logger...)? They would not
    run in a worker process."""
    return any(getattr(litellm, name, None) for name in _CALLBACK_LISTS)


def use_auto(in_flight: int, litellm: Any) -> bool:
    """``FLOW_ENGINE_LLM_PROCESSES=auto``: should this call go to the workers?

    Not while few calls are in flight (a lone ``flow run`` never pays for the workers' start). Once
    ``AUTO_START_AT`` are in flight at once the workers start, in the background; the calls go on
    being made here until they are ready, and to them from then on. If they cannot start, calls stay
    here (with one warning). Never if litellm has callbacks set in this process."""
    global _auto_failed
    if has_callbacks(litellm):
        return False
    workers = _workers
    if workers is not None and workers.count == auto_count():
        if workers.started and workers.alive():
            return True
        if workers.error is None and workers.alive():
            return False  # still starting
    if _auto_failed or in_flight < AUTO_START_AT:
        return False
    if workers is not None and workers.error is not None:
        _auto_failed = True
        log.warning("%s; LLM calls stay in this process", workers.error)
        return False
    try:
        start(auto_count())
    except Exception as exc:  # e.g. no process can be started here
        _auto_failed = True
        log.warning("could not start LLM worker processes (%s); LLM calls stay in this process", exc)
    return False


async def _pool(count: int) -> _LoopPool:
    loop = asyncio.get_running_loop()
    pool = _pools.get(loop)
    if pool is not None and pool.usable(count):
        return pool
    opening = _opening.get(loop)
    if opening is None:
        opening = _opening[loop] = asyncio.Lock()
    async with opening:
        pool = _pools.get(loop)
        if pool is not None and pool.usable(count):
            return pool
        workers = await loop.run_in_executor(None, _current_workers, count)
        connections = []
        turn = _Turn(loop)
        for path in workers.paths:
            reader, writer = await asyncio.open_unix_connection(path, limit=2**24)
            connections.append(_Connection(reader, writer, turn))
        pool = _pools[loop] = _LoopPool(workers, connections)
        return pool


def _portable(kwargs: dict[str, Any], litellm: Any) -> dict[str, Any]:
    """The call's arguments as plain data: a pydantic ``response_format`` becomes its JSON schema
    (a class defined in a function cannot be pickled; litellm would make the same conversion)."""
    response_format = kwargs.get("response_format")
    if isinstance(response_format, type):
        from litellm.utils import type_to_response_format_param

        return {**kwargs, "response_format": type_to_response_format_param(response_format)}
    return kwargs


def _rebuild(litellm: Any, kind: str, data: dict[str, Any], hidden: dict[str, Any]) -> Any:
    cls = litellm.ModelResponse if kind == "completion" else litellm.ImageResponse
    response = cls(**data)
    response._hidden_params = {**(getattr(response, "_hidden_params", None) or {}), **hidden}
    return response


async def call(litellm: Any, kind: str, kwargs: dict[str, Any], count: int) -> Any:
    """``litellm.acompletion`` / ``aimage_generation`` with ``kwargs``, made in one of ``count`` workers.

    Arguments that cannot be sent to another process (a callable, an object of a local class) make
    the call here instead, as without worker processes."""
    pool = await _pool(count)
    portable = _portable(kwargs, litellm)
    try:
        request_id, data = pool.request(kind, portable)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:  # what pickle raises
        log.debug("%s arguments cannot go to a worker process (%s); calling litellm here", kind, exc)
        fn = litellm.acompletion if kind == "completion" else litellm.aimage_generation
        return await fn(**kwargs)
    message = await pool.call(request_id, data)
    if message[1] == wire.OK:
        return _rebuild(litellm, kind, message[2], message[3])
    raise remote_error(message[2])


def shutdown() -> None:
    """Stop the worker processes (they also stop by themselves when this process exits)."""
    global _workers
    with _lock:
        if _workers is not None:
            _workers.close()
            _workers = None


atexit.register(shutdown)
