"""``flow worker``: a Celery worker process that runs many flows at once on one asyncio event loop.

Why this shape: a flow spends nearly all its time waiting on LLM calls, so a process can run hundreds
at once - if they share an event loop. Celery's own pools run one task per process (prefork) or per
thread, each with its own blocking code. So each worker process keeps ONE long-lived event loop in a
daemon thread, and Celery runs with the ``threads`` pool: a pool thread takes a message, hands the run
to the loop (``asyncio.run_coroutine_threadsafe``) and blocks until it ends, which is what makes
late acknowledgement per run work unchanged. ``--concurrency`` (pool threads) is thus the number of
flows in flight per process; the threads only wait, the loop does the work. One loop per process also
means one storage writer thread and one connection pool per process, shared by every run in it. (The
prefork pool works too - the loop is created per process on first use - but wastes the point.)

The same loop runs the recovery scan (``recovery.py``): the runs of dead workers it takes over execute
there too, counted against ``--concurrency`` when the scan decides how many it may take.

Before taking work the worker checks, and refuses to start (exit 2, one line) if any fails: the
broker is reachable, the database opens (and is at the current schema), the database is one other
processes can see (not ``memory://``). It then imports litellm and the model providers, so the first
runs do not block the loop for seconds while their heartbeats are due.

SIGTERM (how containers and process managers stop a program) and Ctrl-C stop the worker at once: the
scan stops, every run it executes is cancelled at its next await (the step in flight recorded
``cancelled``), recorded ``crashed`` with a message saying the worker was stopped, and sent back to the
queue, so that another worker (or this one, restarted) resumes it without repeating its completed
steps. The worker exits 143 (SIGTERM) or 130 (Ctrl-C). ``FLOW_ENGINE_WORKER_SHUTDOWN=finish`` keeps
Celery's warm shutdown instead: running flows finish first, exit 0.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from flow_engine.plugin import ConfigurationError, UsageError

from .app import CONNECT_TIMEOUT, TASK_NAME, create_app, display_broker, waiting_messages
from .recovery import Recovery, deliver

if TYPE_CHECKING:  # pragma: no cover
    from celery import Celery

    from flow_engine.engine import Engine

    from .settings import CelerySettings


class LoopThread:
    """One asyncio event loop in a daemon thread; coroutines are handed to it from other threads."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name="flow-engine-loop", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run ``coro`` on the loop; block the calling thread until it ends, and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def start(self, coro: Coroutine[Any, Any, Any]) -> Future[Any]:
        """Start ``coro`` on the loop without waiting for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


class WorkerProcess:
    """What one worker process shares between its pool threads: the loop, its id as an owner of
    runs (``flow_runs.claimed_by``), and how many runs it executes now."""

    def __init__(self) -> None:
        from flow_engine.executors import worker_id

        self.loop = LoopThread()
        self.owner = worker_id("celery")
        self.concurrency = 0  # set by run_worker; runs of deliveries plus runs taken over by the scan
        self.recovery: Recovery | None = None
        self.app: Celery | None = None
        self.running: set[asyncio.Task[Any]] = set()  # runs this process executes, delivered or taken over
        self.stopped_by: str | None = None  # "SIGTERM" / "SIGINT" once a signal stops the runs at once
        self.handed_back: list[uuid.UUID] = []  # runs to send to the queue again once consuming stopped
        self._deliveries = 0
        self._lock = threading.Lock()

    async def tracked(self, engine: Engine, run_id: uuid.UUID, work: Coroutine[Any, Any, str]) -> str:
        """``work`` (executing ``run_id``), stoppable by a signal: then the run goes back to the queue."""
        if self.stopped_by is not None:  # delivered while stopping: not started, sent back later
            work.close()
            self.handed_back.append(run_id)
            return HANDED_BACK
        task = asyncio.current_task()
        assert task is not None
        self.running.add(task)
        try:
            return await work
        except asyncio.CancelledError:
            if self.stopped_by is None:
                raise
            task.uncancel()
            if await release(engine, run_id, self.owner, self.stopped_by):
                self.handed_back.append(run_id)
            return HANDED_BACK
        finally:
            self.running.discard(task)

    def requeue_handed_back(self, engine: Engine) -> None:
        """Send the runs stopped by a signal to the queue again: after the worker stopped consuming,
        so that the next worker, not this one, takes them."""
        from .app import PUBLISH_RETRY
        from .settings import settings_of

        if not self.handed_back or self.app is None:
            return
        queue = settings_of(engine).celery_queue
        for run_id in self.handed_back:
            try:
                self.app.send_task(
                    TASK_NAME, args=[str(run_id)], queue=queue, retry=True, retry_policy=PUBLISH_RETRY
                )
            except Exception as exc:  # the run is recorded crashed: `flow resume` still finds it
                log.error("run %s: could not send it back to the queue: %s", run_id, exc)
        self.handed_back.clear()

    def stop_runs(self, signal_name: str) -> None:
        """From the signal handler's thread: cancel every run this process executes."""
        self.stopped_by = signal_name

        def cancel_all() -> None:
            for task in list(self.running):
                task.cancel(f"worker stopped ({signal_name})")

        self.loop.loop.call_soon_threadsafe(cancel_all)

    @contextmanager
    def delivering(self) -> Iterator[None]:
        with self._lock:
            self._deliveries += 1
        try:
            yield
        finally:
            with self._lock:
                self._deliveries -= 1

    def free_slots(self) -> int:
        recovered = len(self.recovery.executing) if self.recovery is not None else 0
        return self.concurrency - self._deliveries - recovered


log = logging.getLogger("flow_engine.executors.celery")
HANDED_BACK = "handed back"  # a delivery's outcome when a signal stopped its run: requeued
EXIT_CODES = {"SIGTERM": 143, "SIGINT": 130}
RETRY_AFTER = 5.0  # seconds before a run whose execution hit an infrastructure error is requeued

_lock = threading.Lock()
_process: dict[int, WorkerProcess] = {}


def this_process() -> WorkerProcess:
    """This process's state (created on first use, again after a fork: threads do not survive one)."""
    with _lock:
        pid = os.getpid()
        if pid not in _process:
            _process.clear()
            _process[pid] = WorkerProcess()
        return _process[pid]


def loop_thread() -> LoopThread:
    return this_process().loop


def execute_in_loop(run_id: str) -> str:
    """The body of the Celery task: what a delivery does (``recovery.deliver``), on this process's loop.

    A flow's own failure is recorded on the run and is not an error here. What escapes is the
    infrastructure failing (the database unreachable mid-run, say): the message then goes back to the
    queue after ``RETRY_AFTER`` seconds instead of being acknowledged, so the run is tried again - by
    whichever worker gets it, once this one's heartbeat for it is stale - rather than stranded.
    """
    from celery.exceptions import Reject

    from flow_engine.plugin import get_engine

    from .settings import settings_of

    parsed = uuid.UUID(run_id)  # a malformed message fails (and is dropped), it is not requeued
    process = this_process()
    engine = get_engine()
    try:
        with process.delivering():
            work = deliver(engine, parsed, process.owner, settings_of(engine))
            status = process.loop.run(process.tracked(engine, parsed, work))
    except Exception as exc:
        from flow_engine.jsonable import describe_error

        log.error("run %s: %s; back to the queue in %gs", run_id, describe_error(exc), RETRY_AFTER)
        time.sleep(RETRY_AFTER)  # a little backoff: the database may be down for every worker
        raise Reject(f"run {run_id}: {describe_error(exc)}", requeue=True) from exc
    return str(status)


async def release(engine: Engine, run_id: uuid.UUID, owner: str, signal_name: str) -> bool:
    """A run stopped by a signal: recorded ``crashed`` (claimable, resumed in place by whoever takes
    it next) with the reason. False when it ended meanwhile or is not this worker's."""
    from flow_engine.plugin import RunStatus
    from flow_engine.storage import utcnow

    store = engine.store
    run = await asyncio.to_thread(store.get_run, run_id)
    live = (RunStatus.RUNNING.value, RunStatus.CANCELLED.value)
    if run is None or run.status not in live or run.claimed_by != owner:
        return False
    message = (
        f"the worker {owner} was stopped ({signal_name}) while running it; it went back to the queue "
        "and the next worker resumes it (completed steps are not run again)"
    )
    await store.update_run(
        run_id,
        {
            "status": RunStatus.CRASHED.value,
            "error_message": message,
            "claimed_by": None,
            "completed_at": None,
            "last_heartbeat": utcnow(),
        },
    )
    log.warning("run %s: %s", run_id, message)
    return True


def create_worker_app(settings: CelerySettings) -> Celery:
    """The app of a worker: the submitters' app with the task's body registered."""
    app = create_app(settings)
    app.task(name=TASK_NAME, acks_late=True, reject_on_worker_lost=True, ignore_result=True)(execute_in_loop)
    return app


# -- starting a worker ----------------------------------------------------------------------------
def check_broker(app: Celery) -> None:
    url = app.conf.broker_url
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=CONNECT_TIMEOUT)
    except Exception as exc:
        raise ConfigurationError(f"cannot reach the Celery broker {display_broker(url)}: {exc}") from None


def check_database(engine: Engine) -> None:
    from flow_engine.plugin import redact_url

    url = engine.database_url
    if url.startswith("memory:"):
        raise UsageError(
            "a worker needs a database the submitters share; memory:// lives in one process. "
            "Set FLOW_ENGINE_DATABASE_URL (or --db), e.g. postgresql+psycopg://user@host/db"
        )
    try:
        engine.store  # noqa: B018 - opens it: connects and checks the schema revision
    except ConfigurationError:
        raise
    except Exception as exc:
        from flow_engine.jsonable import describe_error

        reason = describe_error(exc)
        raise ConfigurationError(f"cannot open the database {redact_url(url)}: {reason}") from None


def warm_up(engine: Engine) -> None:
    """Import litellm and register the model providers now, not on the loop in the middle of runs."""
    from flow_engine.llm.loader import ensure_providers

    ensure_providers(engine.plugins.model_providers())


def run_worker(engine: Engine, *, concurrency: int, queues: list[str], loglevel: str) -> int:
    """Check the broker and the database, then run a Celery worker until it is stopped."""
    from celery.signals import worker_ready, worker_shutting_down

    from .settings import settings_of

    settings = settings_of(engine)
    app = create_worker_app(settings)
    check_database(engine)
    check_broker(app)
    warm_up(engine)
    process = this_process()
    process.concurrency = concurrency
    process.app = app
    queues = queues or [settings.celery_queue]
    hostname = f"flow{os.getpid()}@{socket.gethostname()}"  # unique per process: several on one host
    recovery = None
    if settings.recovery_interval > 0:
        takes_pending = settings.celery_queue in queues  # the queue every run is sent to
        recovery = Recovery(
            engine,
            process.owner,
            settings,
            free_slots=process.free_slots,
            waiting=(lambda: waiting_messages(app, settings.celery_queue)) if takes_pending else None,
            track=lambda run_id, work: process.tracked(engine, run_id, work),
        )
    process.recovery = recovery
    stop = asyncio.Event()

    def ready(sender: Any = None, **_: Any) -> None:
        scan = f"every {settings.recovery_interval:g}s" if recovery is not None else "off"
        click.echo(
            f"flow worker ready: {getattr(sender, 'hostname', hostname)}, {concurrency} flows at once, "
            f"queues {', '.join(queues)}, broker {display_broker(app.conf.broker_url)}, "
            f"recovery scan {scan}",
            err=True,
        )
        if recovery is not None:
            process.loop.start(recovery.run(stop))

    def shutting_down(sig: str | None = None, how: str | None = None, **_: Any) -> None:
        process.loop.loop.call_soon_threadsafe(stop.set)
        if settings.worker_shutdown == "cancel" and sig in EXIT_CODES and process.stopped_by is None:
            click.echo(
                f"flow worker: {sig}: stopping its runs now and handing them back to the queue", err=True
            )
            process.stop_runs(sig)

    worker_ready.connect(ready, weak=False)
    worker_shutting_down.connect(shutting_down, weak=False)
    try:
        worker = app.Worker(
            hostname=hostname,
            pool="threads",
            concurrency=concurrency,
            queues=queues,
            loglevel=loglevel,
            without_mingle=True,
            without_gossip=True,
            without_heartbeat=True,
            optimization="fair",
        )
        worker.start()
        if process.stopped_by is not None:
            return EXIT_CODES[process.stopped_by]
        return int(worker.exitcode or 0)
    finally:
        worker_ready.disconnect(ready)
        worker_shutting_down.disconnect(shutting_down)
        process.loop.loop.call_soon_threadsafe(stop.set)
        if recovery is not None:
            process.loop.run(recovery.drain())  # the runs it took over finish, as the pool's did
        process.requeue_handed_back(engine)
        process.loop.stop()
        engine.close()  # writes what is queued
