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

Before taking work the worker checks, and refuses to start (exit 2, one line) if any fails: the
broker is reachable, the database opens (and is at the current schema), the database is one other
processes can see (not ``memory://``). It then imports litellm and the model providers, so the first
runs do not block the loop for seconds while their heartbeats are due.

Warm shutdown (SIGTERM, Ctrl-C) lets running flows finish. A delivery that only watches a run owned by
another worker gives its message back (``Reject(requeue=True)``) instead of holding the shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import click

from flow_engine.errors import ConfigurationError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    from celery import Celery

    from flow_engine.engine import Engine


class LoopThread:
    """One asyncio event loop in a daemon thread; coroutines are handed to it from other threads."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="flow-engine-loop", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run ``coro`` on the loop; block the calling thread until it ends, and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


log = logging.getLogger("flow_engine.executors.celery")
RETRY_AFTER = 5.0  # seconds before a run whose execution hit an infrastructure error is requeued

_lock = threading.Lock()
_state: dict[str, Any] = {}


def loop_thread() -> LoopThread:
    """This process's loop (created on first use, again after a fork: threads do not survive one)."""
    with _lock:
        if _state.get("pid") != os.getpid():
            from flow_engine.executors import worker_id

            _state.update(pid=os.getpid(), loop=LoopThread(), owner=worker_id("celery"))
        loop: LoopThread = _state["loop"]
        return loop


def execute_in_loop(run_id: str) -> str:
    """The body of the Celery task: claim and execute the run on this process's loop.

    A flow's own failure is recorded on the run and is not an error here. What escapes is the
    infrastructure failing (the database unreachable mid-run, say): the message then goes back to the
    queue after ``RETRY_AFTER`` seconds instead of being acknowledged, so the run is tried again - by
    whichever worker gets it, once this one's heartbeat for it is stale - rather than stranded.
    """
    from celery.exceptions import Reject

    from flow_engine.executors import RELEASED, execute_submitted

    parsed = uuid.UUID(run_id)  # a malformed message fails (and is dropped), it is not requeued
    loop = loop_thread()
    try:
        status = loop.run(execute_submitted(parsed, _state["owner"], should_stop=loop.stopping.is_set))
    except Exception as exc:
        from flow_engine.jsonable import describe_error

        log.error("run %s: %s; back to the queue in %gs", run_id, describe_error(exc), RETRY_AFTER)
        time.sleep(RETRY_AFTER)  # a little backoff: the database may be down for every worker
        raise Reject(f"run {run_id}: {describe_error(exc)}", requeue=True) from exc
    if status == RELEASED:
        raise Reject(f"worker shutting down; run {run_id} is owned by another worker", requeue=True)
    return str(status)


# -- starting a worker ----------------------------------------------------------------------------
def check_broker(app: Celery) -> None:
    from .app import CONNECT_TIMEOUT, display_broker

    url = app.conf.broker_url
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=CONNECT_TIMEOUT)
    except Exception as exc:
        raise ConfigurationError(f"cannot reach the Celery broker {display_broker(url)}: {exc}") from None


def check_database(engine: Engine) -> None:
    from flow_engine.llm.redact import redact_url

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

    from .app import create_app, display_broker

    settings = engine.settings
    app = create_app(settings)
    check_database(engine)
    check_broker(app)
    warm_up(engine)
    loop = loop_thread()
    queues = queues or [settings.celery_queue]
    hostname = f"flow{os.getpid()}@{socket.gethostname()}"  # unique per process: several on one host

    def ready(sender: Any = None, **_: Any) -> None:
        click.echo(
            f"flow worker ready: {getattr(sender, 'hostname', hostname)}, {concurrency} flows at once, "
            f"queues {', '.join(queues)}, broker {display_broker(app.conf.broker_url)}",
            err=True,
        )

    def shutting_down(**_: Any) -> None:
        loop.stopping.set()

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
        return int(worker.exitcode or 0)
    finally:
        worker_ready.disconnect(ready)
        worker_shutting_down.disconnect(shutting_down)
        loop.stop()
        engine.close()  # writes what is queued
