"""LLM calls to network providers made in worker processes: opt-in, ``FLOW_ENGINE_LLM_PROCESSES=N``.

Why: litellm spends 2-6 ms of CPU on every call. With hundreds of calls in flight that CPU is all the
flows' process has, on one core, and it lands on the event loop in bursts. With N worker processes,
each running litellm on its own event loop, the flows' process only sends the request and rebuilds
the answer (~0.1 ms) and litellm's CPU runs on other cores: the 500-flow benchmark goes from 1.3-1.8x
of litellm called directly to under 1x (docs/performance.md). Off by default: a lone ``flow run``
would pay for the workers' start (each imports litellm), and litellm settings or callbacks made in
this process's code do not reach them (each worker imports litellm afresh, from the environment).

What a caller can count on:

- **A deadline.** An answer is awaited for the request timeout plus a margin (:func:`deadline_of`);
  then the call is cancelled in the worker and fails with a ``TimeoutError``, which is transient and
  retried like any timeout. A worker that then does not answer a ping within ``PING_TIMEOUT_S`` is
  stuck: it is killed and replaced.
- **One worker's death is its own.** A worker that exits fails only its own calls in flight (as a
  transient connection error: they are retried, on another worker); it alone is restarted, and the
  other workers' calls go on. Nothing is polled per call: a worker's end is seen when its socket
  closes.
- **The same answers and errors.** A failed call comes back as a :class:`RemoteLLMError` named after
  the original exception's class, with its message, HTTP status and headers, so retries,
  ``Retry-After`` and error messages work as for a call made here. Cancelling the caller cancels the
  call in the worker. Calls to in-process providers (the offline model, a test's scripted model),
  streamed calls and calls whose arguments cannot be pickled are made here.

The processes start on the first call and are shared by every event loop of this process (each loop
opens its own connection to each). They exit when this process does: they watch their standard input.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import contextvars
import itertools
import logging
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import threading
from typing import Any

from ..errors import ConfigurationError
from . import wire
from .failures import Failure

log = logging.getLogger("flow_engine.llm")

START_TIMEOUT_S = 300.0  # importing litellm takes 1-5 s; far longer on a machine under load
RESULTS_PER_TURN = 5  # answers handed to callers per event-loop iteration (each runs on 0.3-1 ms)
PING_TIMEOUT_S = 5.0  # a worker silent this long after a missed deadline is stuck


def deadline_of(request_timeout: float) -> float:
    """How long a caller waits for a worker's answer: the worker's litellm gives up after
    ``request_timeout`` and says so; the margin is for that answer to arrive."""
    return request_timeout + max(1.0, request_timeout / 10)


class NotPortable(Exception):
    """The call's arguments cannot be pickled: it is made in this process instead."""


class RemoteLLMError(Exception):
    """A call that failed in a worker process. Its class is named after the original exception's."""

    status_code: int | None = None
    litellm_response_headers: dict[str, str] | None = None
    failure: Failure | None = None  # what happened, classified by the worker (failures.classify)


_error_classes: dict[tuple[str, ...], type[RemoteLLMError]] = {}


def remote_error(info: dict[str, Any]) -> RemoteLLMError:
    """The exception for a failure reported by a worker: a class with the original's name whose
    ancestors carry the original's ancestors' names (what the retry policy and ``classify`` read)."""
    types = tuple(info.get("types") or (info.get("type") or "RemoteLLMError",))
    cls = _error_classes.get(types)
    if cls is None:
        bases: tuple[type, ...] = (RemoteLLMError,)
        for name in reversed(types[1:]):  # the original's ancestors, as empty classes of their names
            if name not in {"object", "BaseException", "Exception"}:
                bases = (type(name, bases, {"__module__": __name__}),)
        cls = _error_classes[types] = type(types[0], bases, {"__module__": __name__})
    exc = cls(info.get("message", ""))
    told = info.get("failure")
    exc.failure = Failure(*told) if told else None
    exc.status_code = info.get("status_code")
    exc.litellm_response_headers = info.get("headers")
    return exc


def _worker_exited() -> RemoteLLMError:
    """What a call in flight gets when its worker exits: a connection error, transient."""
    return remote_error(
        {
            "types": ["APIConnectionError", "OpenAIError"],
            "message": "the LLM worker process exited during the call",
        }
    )


def worker_command(socket_path: str) -> list[str]:
    return [sys.executable, "-m", "flow_engine.llm.worker", socket_path]


class _Worker:
    """One worker process, starting at once; ready once it has imported litellm and listens."""

    def __init__(self, path: str):
        self.path = path
        self.process = subprocess.Popen(
            worker_command(path),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.error: str | None = None
        self._done = threading.Event()
        threading.Thread(target=self._await_ready, name="flow-engine-llm-start", daemon=True).start()

    def _await_ready(self) -> None:
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        while line and line != "READY":  # something printed while importing litellm
            line = self.process.stdout.readline().strip()
        if line != "READY":
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(5)  # its output ended: it is exiting; wait for its exit code
            self.error = (
                f"an LLM worker process did not start (exit code {self.process.poll()}, said {line!r}); "
                "its error is above on stderr - or set FLOW_ENGINE_LLM_PROCESSES=0 to call litellm "
                "in this process"
            )
        self._done.set()

    def wait_ready(self) -> None:
        """Block until the worker listens (run in a thread); raise if it cannot start."""
        if not self._done.wait(START_TIMEOUT_S):
            self.error = f"an LLM worker process did not start within {START_TIMEOUT_S:g} s"
        if self.error is not None:
            raise ConfigurationError(self.error)

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.process.kill()

    def stop(self) -> None:
        try:
            if self.process.stdin is not None:
                self.process.stdin.close()  # the worker's signal to exit
            self.process.terminate()
            self.process.wait(5)
        except Exception:  # pragma: no cover - already gone, or stuck: the OS takes it
            self.kill()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


class _Workers:
    """This process's worker processes, one slot each: a slot's worker is replaced on its own."""

    def __init__(self, count: int):
        self.count = count
        self.folder = tempfile.mkdtemp(prefix="flow-engine-llm-")
        os.chmod(self.folder, 0o700)
        self._serial = itertools.count()
        self.slots = [self._new(index) for index in range(count)]

    def _new(self, index: int) -> _Worker:
        return _Worker(os.path.join(self.folder, f"{index}-{next(self._serial)}.sock"))

    def replace(self, index: int, old: _Worker) -> _Worker:
        """Slot ``index``'s worker, a new one if it is still ``old`` (every event loop that saw ``old``
        go asks; the first one replaces it). Blocks: run in a thread."""
        with _lock:
            if self.slots[index] is old and _workers is self:
                old.kill()
                with contextlib.suppress(Exception):
                    old.process.wait(5)
                self.slots[index] = self._new(index)
            return self.slots[index]

    def close(self) -> None:
        for worker in self.slots:
            worker.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


def _background(loop: asyncio.AbstractEventLoop, coroutine: Any) -> asyncio.Task[Any]:
    """A task of the pool's own, in an empty context: a task copies the context it is created in, and
    the caller's (its run, its step, its trace span) would live as long as the connection."""
    return loop.create_task(coroutine, context=contextvars.Context())


def _opening(loop: asyncio.AbstractEventLoop, coroutine: Any) -> asyncio.Task[Any]:
    """A connection being opened in the background: one that no call waited for may fail unseen (the
    next call in turn opens again), so its exception is taken here rather than logged as lost."""
    task = _background(loop, coroutine)
    task.add_done_callback(lambda done: done.cancelled() or done.exception())
    return task


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

    def __init__(
        self,
        worker: _Worker,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        turn: _Turn,
        on_close: Any,
    ):
        self.worker = worker
        self.writer = writer
        self.pending: dict[int, asyncio.Future[tuple[Any, ...]]] = {}
        self.closed = False
        self.checking = False  # a ping is on its way (see _LoopPool.check)
        self._turn = turn
        self._on_close = on_close
        self._reading = _background(asyncio.get_running_loop(), self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        ended = False  # by the worker (its end of the socket closed), not by this loop's cancellation
        try:
            while True:
                message = await wire.receive(reader)
                future = self.pending.pop(message[0], None)
                if future is not None and not future.done():
                    await self._turn.take()
                    if not future.done():  # its caller may have been cancelled meanwhile
                        future.set_result(message)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            ended = True
        finally:
            self.closed = True
            for future in self.pending.values():
                if not future.done():
                    future.set_exception(_worker_exited())
            self.pending.clear()
            self.writer.close()
            if ended:
                self._on_close(self)

    def send(self, request_id: int, data: bytes) -> asyncio.Future[tuple[Any, ...]]:
        future: asyncio.Future[tuple[Any, ...]] = asyncio.get_running_loop().create_future()
        self.pending[request_id] = future
        self.writer.write(data)
        return future

    def cancel(self, request_id: int) -> None:
        self.pending.pop(request_id, None)
        if not self.closed:
            self.writer.write(wire.encode((wire.CANCEL, request_id)))


class _LoopPool:
    """One event loop's connections to the workers, used in turn."""

    def __init__(self, workers: _Workers, loop: asyncio.AbstractEventLoop):
        self.workers = workers
        self.loop = loop
        self.connections: list[_Connection | None] = [None] * workers.count
        self._opening: list[asyncio.Future[_Connection] | None] = [None] * workers.count
        self._next = itertools.cycle(range(workers.count))
        self._ids = itertools.count(1)
        self._turn = _Turn(loop)

    def current(self, count: int) -> bool:
        return self.workers is _workers and self.workers.count == count

    async def connection(self) -> _Connection:
        """The next slot's connection, in turn. While that slot's is being opened (its worker still
        starting), another open one serves: calls never wait for a worker while one listens, and every
        slot gets its connection, so calls one after another are spread over all the workers."""
        first = next(self._next)
        connection = self.connections[first]
        if connection is not None and not connection.closed:
            return connection
        opening = self._open(first)
        count = self.workers.count
        for k in range(1, count):
            connection = self.connections[(first + k) % count]
            if connection is not None and not connection.closed:
                return connection
        return await asyncio.shield(opening)

    def _open(self, index: int) -> asyncio.Future[_Connection]:
        opening = self._opening[index]
        if (
            opening is None
            or (opening.done() and (opening.cancelled() or opening.exception()))
            or (opening.done() and opening.result().closed)
        ):
            opening = self._opening[index] = _opening(self.loop, self._connect(index))
        return opening

    async def _connect(self, index: int) -> _Connection:
        worker = self.workers.slots[index]
        failure: OSError | None = None
        for _ in range(2):
            # it could not start, or has exited since (seen at connection time only): a new one
            if worker.error is not None or worker.process.poll() is not None:
                worker = await self.loop.run_in_executor(None, self.workers.replace, index, worker)
            await self.loop.run_in_executor(None, worker.wait_ready)
            try:
                reader, writer = await asyncio.open_unix_connection(worker.path, limit=2**24)
            except OSError as exc:
                failure = exc
                continue
            connection = _Connection(worker, reader, writer, self._turn, self._closed)
            self.connections[index] = connection
            return connection
        raise _worker_exited() from failure  # transient: the call is retried

    def _closed(self, connection: _Connection) -> None:
        """A connection ended: its worker exited (or this loop is closing). Replace that worker alone."""
        if self.loop.is_closed() or _workers is not self.workers:
            return
        index = next((i for i, c in enumerate(self.connections) if c is connection), None)
        if index is None:
            return
        self.connections[index] = None
        with contextlib.suppress(RuntimeError):  # the loop is shutting down
            self._opening[index] = _opening(self.loop, self._reopen(index, connection.worker))

    async def _reopen(self, index: int, old: _Worker) -> _Connection:
        log.warning("an LLM worker process (pid %s) ended; starting another", old.process.pid)
        await self.loop.run_in_executor(None, self.workers.replace, index, old)
        return await self._connect(index)

    def check(self, connection: _Connection) -> None:
        """A call on ``connection`` missed its deadline: ping the worker; kill it if it is silent."""
        if connection.checking or connection.closed:
            return
        connection.checking = True
        _background(self.loop, self._ping(connection))

    async def _ping(self, connection: _Connection) -> None:
        request_id = next(self._ids)
        try:
            async with asyncio.timeout(PING_TIMEOUT_S):
                await connection.send(request_id, wire.encode((wire.PING, request_id)))
        except TimeoutError:
            connection.pending.pop(request_id, None)
            log.warning(
                "an LLM worker process (pid %s) did not answer for %g s; replacing it",
                connection.worker.process.pid,
                PING_TIMEOUT_S,
            )
            connection.worker.kill()  # its socket closes: _closed replaces it
        except Exception:  # the worker exited meanwhile: being replaced already
            pass
        finally:
            connection.checking = False

    async def call(self, data: bytes, request_id: int, deadline: float) -> tuple[Any, ...]:
        connection = await self.connection()
        future = connection.send(request_id, data)
        try:
            async with asyncio.timeout(deadline):
                try:
                    return await future
                except asyncio.CancelledError:
                    connection.cancel(request_id)
                    raise
        except TimeoutError:
            self.check(connection)
            raise TimeoutError(f"no answer from the LLM worker process within {deadline:g} s") from None


_lock = threading.RLock()
_workers: _Workers | None = None
# each event loop's pool; a pool refers to its loop (its tasks do), so this cannot be a weak mapping:
# the pools of closed loops are dropped whenever a new loop makes its own (asyncio.run per task)
_pools: dict[asyncio.AbstractEventLoop, _LoopPool] = {}
_warned_callbacks = False


def _current_workers(count: int) -> _Workers:
    """``count`` workers, started now if need be (none yet, or another number of them)."""
    global _workers
    with _lock:
        workers = _workers
        if workers is not None and workers.count != count:
            workers.close()
            workers = _workers = None
        if workers is None:
            workers = _workers = _Workers(count)
        return workers


def _pool(count: int) -> _LoopPool:
    loop = asyncio.get_running_loop()
    pool = _pools.get(loop)
    if pool is None or not pool.current(count):
        with _lock:
            for closed in [other for other in _pools if other.is_closed()]:
                del _pools[closed]
        pool = _pools[loop] = _LoopPool(_current_workers(count), loop)
    return pool


_CALLBACK_LISTS = (
    "callbacks",
    "success_callback",
    "failure_callback",
    "input_callback",
    "_async_success_callback",
    "_async_failure_callback",
    "service_callback",
)


def _warn_about_callbacks(litellm: Any) -> None:
    global _warned_callbacks
    if not _warned_callbacks and any(getattr(litellm, name, None) for name in _CALLBACK_LISTS):
        _warned_callbacks = True
        log.warning(
            "litellm has callbacks set in this process; they do not run in the LLM worker processes "
            "(FLOW_ENGINE_LLM_PROCESSES): set FLOW_ENGINE_LLM_PROCESSES=0 to keep them"
        )


def _portable(kwargs: dict[str, Any]) -> dict[str, Any]:
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


async def call(litellm: Any, kind: str, kwargs: dict[str, Any], count: int, request_timeout: float) -> Any:
    """``litellm.acompletion`` / ``aimage_generation`` with ``kwargs``, made in one of ``count`` workers;
    the answer awaited for :func:`deadline_of` ``(request_timeout)``. Raises :class:`NotPortable`,
    before sending anything, if the arguments cannot be sent to another process (a callable, an
    object of a local class): the caller makes that call itself."""
    pool = _pool(count)
    _warn_about_callbacks(litellm)
    request_id = next(pool._ids)
    try:
        data = wire.encode((wire.CALL, request_id, kind, _portable(kwargs)))
    except (pickle.PicklingError, TypeError, AttributeError) as exc:  # what pickle raises
        raise NotPortable(f"{kind} arguments cannot go to a worker process ({exc})") from exc
    message = await pool.call(data, request_id, deadline_of(request_timeout))
    if message[1] == wire.OK:
        return _rebuild(litellm, kind, message[2], message[3])
    raise remote_error(message[2])


def running() -> list[int]:
    """The process ids of the running workers (tests use it)."""
    workers = _workers
    return [w.process.pid for w in workers.slots] if workers is not None else []


def shutdown() -> None:
    """Stop the worker processes (they also stop by themselves when this process exits)."""
    global _workers
    with _lock:
        if _workers is not None:
            _workers.close()
            _workers = None


def _forget_in_child() -> None:
    """A forked child (a Celery worker, say) starts its own workers: the parent's are the parent's."""
    global _workers, _pools, _lock
    _lock = threading.RLock()
    _workers = None
    _pools = {}


atexit.register(shutdown)
os.register_at_fork(after_in_child=_forget_in_child)
