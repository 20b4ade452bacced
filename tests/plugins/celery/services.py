"""A small real deployment for the Celery tests: a broker (Redis or RabbitMQ), a PostgreSQL schema, the
fake OpenAI server in its own process, and ``flow worker`` subprocesses - everything on 127.0.0.1.

The brokers are used only when ``FLOW_ENGINE_TEST_REDIS_URL`` / ``FLOW_ENGINE_TEST_AMQP_URL`` are set
(PostgreSQL: ``FLOW_ENGINE_TEST_POSTGRES_URL``, see tests/plugins/sql/databases.py); without them the
tests are skipped with a how-to, unless ``FLOW_ENGINE_TEST_REQUIRE_SERVICES`` is set (CI), where they
fail. Each deployment gets a queue name and Redis key prefix of its own (``global_keyprefix``) and a
fresh PostgreSQL schema, so parallel test runs never see each other's runs or messages; its Redis keys
(or RabbitMQ queue and exchange) are deleted at the end.

Timing settings are short so that recovery is quick to observe (``TIMINGS``, or a deployment's own):
heartbeat every 0.5 s, a run is stale after 5 s without one, Redis redelivers an unacknowledged
message after 3 s.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.fake_openai_server import API_KEY, RemoteFakeOpenAI, start_subprocess

REDIS_ENV = "FLOW_ENGINE_TEST_REDIS_URL"
AMQP_ENV = "FLOW_ENGINE_TEST_AMQP_URL"
BROKERS = {  # kind -> (variable, example)
    "redis": (REDIS_ENV, "redis://127.0.0.1:6379/0"),
    "amqp": (AMQP_ENV, "amqp://guest:guest@127.0.0.1:5672//"),
}
ROOT = Path(__file__).resolve().parents[3]
FLOW = Path(sys.executable).with_name("flow")
READY = "flow worker ready"
TIMINGS = {
    "FLOW_ENGINE_HEARTBEAT_INTERVAL": "0.5",
    "FLOW_ENGINE_STALE_AFTER": "5",
    "FLOW_ENGINE_CELERY_VISIBILITY_TIMEOUT": "3",
}


def broker_base_url(kind: str = "redis") -> str:
    """The broker URL of ``kind``; skipped without one, failed where services are required or the
    broker does not answer."""
    variable, example = BROKERS[kind]
    url = os.environ.get(variable)
    if not url:
        if os.environ.get("FLOW_ENGINE_TEST_REQUIRE_SERVICES"):
            pytest.fail(f"FLOW_ENGINE_TEST_REQUIRE_SERVICES is set but {variable} is not")
        pytest.skip(
            f"Celery tests on {kind} need it: set {variable}, e.g. {variable}={example} "
            "(and FLOW_ENGINE_TEST_POSTGRES_URL for the database; .ci/run sets them)"
        )
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=3)
    except Exception as exc:
        pytest.fail(f"{variable}={url} but the broker does not answer: {exc}")
    return url


def flow_command() -> list[str]:
    return [str(FLOW)] if FLOW.exists() else [sys.executable, "-m", "flow_engine.cli.main"]


@dataclass
class Completed:
    returncode: int
    stdout: str
    stderr: str


@dataclass
class Worker:
    """One ``flow worker`` subprocess; its output goes to a log file (read it with ``log()``)."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)


@dataclass
class Deployment:
    """Submitters, workers and the database of one test module."""

    db_url: str
    broker_url: str
    fake: RemoteFakeOpenAI
    tmp: Path
    timings: dict[str, str] = field(default_factory=lambda: dict(TIMINGS))
    prefix: str = field(default_factory=lambda: f"fe-test-{uuid.uuid4().hex[:10]}")
    workers: list[Worker] = field(default_factory=list)
    _store: Any = None

    def env(self, *, pythonpath: list[Path] | None = None, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLOW_ENGINE_")}
        env.update(
            FLOW_ENGINE_DATABASE_URL=self.db_url,
            FLOW_ENGINE_BROKER_URL=self.broker_url,
            FLOW_ENGINE_EXECUTOR="celery",
            FLOW_ENGINE_CELERY_QUEUE=self.prefix,
            FLOW_ENGINE_CELERY_KEY_PREFIX=f"{self.prefix}:",
            FLOW_ENGINE_MODEL="openai/gpt-4o-mini",
            FLOW_ENGINE_API_BASE=self.fake.base_url,
            FLOW_ENGINE_API_KEY=API_KEY,
            FLOW_ENGINE_DATA_DIR=str(self.tmp / "data"),
            FLOW_ENGINE_REQUEST_TIMEOUT="20",
            FLOW_ENGINE_RETRY_INITIAL_DELAY="0.05",
            LITELLM_LOCAL_MODEL_COST_MAP="True",
            NO_COLOR="1",
            PYTHONPATH=os.pathsep.join(str(p) for p in [ROOT, *(pythonpath or [])]),
        )
        env.update(self.timings)
        env.update(extra)
        return env

    # -- processes --------------------------------------------------------------------------
    def flow(self, *args: str, timeout: float = 60, **env: Any) -> Completed:
        """``flow ARGS`` as a subprocess of this deployment."""
        proc = subprocess.run(
            [*flow_command(), *args],
            capture_output=True,
            text=True,
            env=self.env(**env),
            cwd=self.tmp,
            timeout=timeout,
        )
        return Completed(proc.returncode, proc.stdout, proc.stderr)

    def python(self, *args: str, timeout: float = 120, **env: Any) -> Completed:
        argv, environ = [sys.executable, *args], self.env(**env)
        proc = subprocess.run(argv, capture_output=True, text=True, env=environ, cwd=ROOT, timeout=timeout)
        return Completed(proc.returncode, proc.stdout, proc.stderr)

    def start_workers(
        self, count: int, *, concurrency: int = 50, timeout: float = 120, **env: str
    ) -> list[Worker]:
        """Start ``count`` workers at once and wait until every one says it is ready."""
        started = []
        for _ in range(count):
            name = f"w{len(self.workers) + 1}"
            log_path = self.tmp / f"worker-{name}.log"
            with log_path.open("wb") as log:
                process = subprocess.Popen(
                    [*flow_command(), "worker", "--concurrency", str(concurrency), "--loglevel", "INFO"],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=self.env(**env),
                    cwd=self.tmp,
                    start_new_session=True,
                )
            worker = Worker(name, process, log_path)
            self.workers.append(worker)
            started.append(worker)
        deadline = time.monotonic() + timeout
        for worker in started:
            while READY not in worker.log():
                if not worker.alive():
                    code = worker.process.returncode
                    pytest.fail(f"worker {worker.name} exited with {code}:\n{worker.log()}")
                if time.monotonic() > deadline:
                    pytest.fail(f"worker {worker.name} not ready after {timeout}s:\n{worker.log()}")
                time.sleep(0.1)
        return started

    def worker_of(self, claimed_by: str | None) -> Worker:
        """The worker whose id (``celery:host:pid:nonce``) is stored in ``flow_runs.claimed_by``."""
        assert claimed_by, "the run was not claimed"
        pid = int(claimed_by.split(":")[2])
        return next(w for w in self.workers if w.pid == pid)

    def stop(self) -> None:
        for worker in self.workers:
            if worker.alive():
                worker.process.send_signal(signal.SIGKILL)
        for worker in self.workers:
            try:
                worker.process.wait(10)
            except subprocess.TimeoutExpired:  # pragma: no cover
                pass
        if self._store is not None:
            self._store.close()
        if self.broker_url.startswith("redis"):
            import redis

            client = redis.Redis.from_url(self.broker_url)
            keys = list(client.scan_iter(f"{self.prefix}*", count=1000))
            if keys:
                client.delete(*keys)
        else:
            from kombu import Connection

            with Connection(self.broker_url, connect_timeout=3) as conn:
                channel = conn.default_channel
                channel.queue_delete(self.prefix)
                channel.exchange_delete(self.prefix)

    def live_workers(self, count: int, *, concurrency: int = 50) -> list[Worker]:
        """``count`` running workers: those alive, and new ones started for the rest."""
        alive = [w for w in self.workers if w.alive()]
        if len(alive) < count:
            alive += self.start_workers(count - len(alive), concurrency=concurrency)
        return alive[:count]

    # -- the database -----------------------------------------------------------------------
    @property
    def store(self) -> Any:
        from flow_engine.plugins.sql.store import SqlStore

        if self._store is None:
            self._store = SqlStore(self.db_url)
        return self._store

    def wait_until(self, check: Any, timeout: float, what: str, interval: float = 0.1) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {w.name}:\n{w.log()[-3000:]}" for w in self.workers)
                pytest.fail(f"timed out after {timeout}s waiting for {what}\n{logs}")
            time.sleep(interval)


@contextmanager
def deployment(
    tmp: Path, *, broker: str = "redis", latency_ms: float = 50, timings: dict[str, str] | None = None
) -> Iterator[Deployment]:
    """A broker (``redis`` or ``amqp``) + a fresh PostgreSQL schema at the current revision + the fake
    server; workers are started by the test (``start_workers``) and always killed at the end."""
    from flow_engine.plugins.sql import migrate
    from tests.plugins.sql.databases import pg_schema

    broker_url = broker_base_url(broker)
    with pg_schema() as db_url:
        migrate.upgrade(db_url)
        server, fake = start_subprocess(latency_ms=latency_ms)
        setup = Deployment(db_url, broker_url, fake, tmp, timings=dict(timings or TIMINGS))
        try:
            yield setup
        finally:
            setup.stop()
            server.terminate()
            server.wait(10)
