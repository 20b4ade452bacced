"""Benchmark: throughput of background runs on 1 and 2 Celery worker processes against the same flows run
locally in one process.

All three sides run the same flow (``--steps`` ``UnstructuredStep`` calls, defined in this module so
the workers import it too) against the same fake OpenAI-compatible server in its own process (fixed
latency, default 100 ms), recording into PostgreSQL (a fresh schema per side), with at most
``--concurrency`` flows in flight per process:

- ``local, 1 process``: this process runs ``--flows`` flows with ``BaseFlow.execute`` on one event
  loop (a semaphore keeps ``--concurrency`` in flight);
- ``celery, N workers``: this process submits the flows (``BaseFlow.submit(executor="celery")``) to
  Redis and N ``flow worker --concurrency C`` subprocesses execute them; the clock runs from the
  first submit to the last run found completed in the database.

It prints flows/s and the ratios. On a machine with few cores the workers, PostgreSQL, Redis, the fake
server and this process share them, which caps what a second worker can add. Needs Redis and
PostgreSQL (``FLOW_ENGINE_TEST_REDIS_URL`` / ``FLOW_ENGINE_TEST_POSTGRES_URL``, or the options).
Usage::

    .venv/bin/python benchmarks/bench_celery.py [--flows 400] [--steps 3] [--latency-ms 100]
        [--concurrency 100] [--repeat 3] [--redis URL] [--postgres URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from pydantic import BaseModel  # noqa: E402

from benchmarks.common import header, row  # noqa: E402
from flow_engine import BaseFlow, UnstructuredStep  # noqa: E402

DEFAULT_REDIS = os.environ.get("FLOW_ENGINE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
DEFAULT_PG = os.environ.get(
    "FLOW_ENGINE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
FLOW_REF = "benchmarks.bench_celery:BenchFlow"


class Ask(UnstructuredStep):
    step_name = "ask"

    class Inputs(BaseModel):
        prompt: str


class BenchFlow(BaseFlow):
    flow_name = "bench_celery"

    class Inputs(BaseModel):
        topic: str
        steps: int = 3

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        answer = ""
        for number in range(inputs["steps"]):
            answer = (
                await Ask().execute({"prompt": f"{inputs['topic']} #{number}: {answer[-40:]}"})
            ).output_content
        return {"answer": answer}


# -- services -------------------------------------------------------------------------------------
def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOW_ENGINE_")}
    env["PYTHONPATH"] = str(ROOT)
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    env.update(extra)
    return env


@contextmanager
def fake_server(latency_ms: float) -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_openai_server", "--latency-ms", str(latency_ms)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=_env(),
        cwd=ROOT,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    try:
        if not line.startswith("READY "):
            raise RuntimeError(f"the fake server did not start: {line!r}")
        yield line.split()[1]
    finally:
        process.terminate()
        process.wait(10)


@contextmanager
def pg_schema(base: str) -> Iterator[str]:
    import psycopg

    from flow_engine.plugins.sql import migrate
    from flow_engine.plugins.sql.connect import parse_url

    schema = f"bench_celery_{uuid.uuid4().hex[:10]}"
    conninfo = parse_url(base).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        url = f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
        try:
            migrate.upgrade(url)
            yield url
        finally:
            import flow_engine

            flow_engine.configure(database_url="memory://")  # closes the store of this schema
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


def settings_env(db: str, redis: str, api_base: str, prefix: str) -> dict[str, str]:
    return {
        "FLOW_ENGINE_DATABASE_URL": db,
        "FLOW_ENGINE_BROKER_URL": redis,
        "FLOW_ENGINE_CELERY_QUEUE": prefix,
        "FLOW_ENGINE_CELERY_KEY_PREFIX": f"{prefix}:",
        "FLOW_ENGINE_MODEL": "openai/gpt-4o-mini",
        "FLOW_ENGINE_API_BASE": api_base,
        "FLOW_ENGINE_API_KEY": "test-key",
    }


def configure(env: dict[str, str]) -> None:
    import flow_engine

    flow_engine.configure(**{k.removeprefix("FLOW_ENGINE_").lower(): v for k, v in env.items()})


# -- the sides ------------------------------------------------------------------------------------
async def local_side(flows: int, steps: int, concurrency: int, repeat: int) -> list[float]:
    gate = asyncio.Semaphore(concurrency)

    async def one(topic: str) -> None:
        async with gate:
            await BenchFlow().execute({"topic": topic, "steps": steps})

    await BenchFlow().execute({"topic": "warm-up", "steps": 1})
    times = []
    for round_ in range(repeat):
        started = time.perf_counter()
        await asyncio.gather(*(one(f"local-{round_}-{i}") for i in range(flows)))
        times.append(time.perf_counter() - started)
    return times


def start_workers(
    count: int, concurrency: int, env: dict[str, str], logs: Path
) -> list[subprocess.Popen[bytes]]:
    flow = Path(sys.executable).with_name("flow")
    workers = []
    for i in range(count):
        log = logs / f"bench-worker-{i}.log"
        with log.open("wb") as out:
            workers.append(
                subprocess.Popen(
                    [str(flow), "worker", "--concurrency", str(concurrency), "--loglevel", "WARNING"],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=_env(**env),
                    cwd=ROOT,
                )
            )
    deadline = time.monotonic() + 120
    for i, worker in enumerate(workers):
        log = logs / f"bench-worker-{i}.log"
        while "flow worker ready" not in log.read_text(errors="replace"):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker {i} did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.1)
    return workers


async def celery_side(flows: int, steps: int, repeat: int) -> list[float]:
    """Submit ``flows`` runs ``repeat`` times; each time, the seconds until the last one completed."""
    from flow_engine.engine import get_engine

    store = get_engine().store

    def completed() -> int:
        failed = store.list_runs(status="failed", limit=1)
        if failed:
            raise RuntimeError(f"a run failed: {failed[0].error_message}")
        return len(store.list_runs(status="completed", limit=1_000_000))

    await BenchFlow().submit({"topic": "warm-up", "steps": 1}, executor="celery")  # workers warm up
    while completed() < 1:  # noqa: ASYNC110 - the workers, in other processes, write the runs
        await asyncio.sleep(0.05)
    times = []
    for round_ in range(repeat):
        before = completed()
        started = time.perf_counter()
        submits = [
            BenchFlow().submit({"topic": f"celery-{round_}-{i}", "steps": steps}, executor="celery")
            for i in range(flows)
        ]
        await asyncio.gather(*submits)
        while completed() < before + flows:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        times.append(time.perf_counter() - started)
    return times


def run_celery(workers: int, args: argparse.Namespace, api_base: str, logs: Path) -> list[float]:
    with pg_schema(args.postgres) as db:
        prefix = f"bench-{uuid.uuid4().hex[:8]}"
        env = settings_env(db, args.redis, api_base, prefix)
        configure(env)
        procs = start_workers(workers, args.concurrency, env, logs)
        try:
            return asyncio.run(celery_side(args.flows, args.steps, args.repeat))
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
            import redis

            client = redis.Redis.from_url(args.redis)
            keys = list(client.scan_iter(f"{prefix}*"))
            if keys:
                client.delete(*keys)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--flows", type=int, default=400)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--concurrency", type=int, default=100, help="flows in flight per process")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per side; the median is reported")
    parser.add_argument("--redis", default=DEFAULT_REDIS)
    parser.add_argument("--postgres", default=DEFAULT_PG)
    args = parser.parse_args(argv if argv is not None else sys.argv[1:] if __name__ == "__main__" else [])
    try:
        import celery  # noqa: F401
        import redis

        redis.Redis.from_url(args.redis, socket_connect_timeout=2).ping()
    except Exception as exc:
        print(f"\n## bench_celery: not available ({type(exc).__name__}: {exc})")
        return {}
    header(
        f"Background runs on Celery: {args.flows} flows x {args.steps} LLM steps, fake server latency "
        f"{args.latency_ms:g} ms, PostgreSQL, <= {args.concurrency} flows in flight per process, "
        f"median of {args.repeat}"
    )
    import tempfile

    results: dict[str, float] = {}
    with fake_server(args.latency_ms) as api_base, tempfile.TemporaryDirectory() as tmp:
        with pg_schema(args.postgres) as db:
            configure(settings_env(db, args.redis, api_base, "unused"))
            times = asyncio.run(local_side(args.flows, args.steps, args.concurrency, args.repeat))
            results["local"] = args.flows / statistics.median(times)
        for workers in (1, 2):
            times = run_celery(workers, args, api_base, Path(tmp))
            results[f"celery_{workers}"] = args.flows / statistics.median(times)
    ideal = 1000 / (args.latency_ms * args.steps) * args.concurrency
    row("ceiling: concurrency / (steps x latency), per process", f"{ideal:.0f} flows/s")
    row("local, 1 process (BaseFlow.execute)", f"{results['local']:.1f} flows/s", "1.00x")
    for workers in (1, 2):
        value = results[f"celery_{workers}"]
        row(
            f"celery, {workers} worker process(es)",
            f"{value:.1f} flows/s",
            f"{value / results['local']:.2f}x",
        )
    row("celery 2 workers / 1 worker", "", f"{results['celery_2'] / results['celery_1']:.2f}x")
    return results


if __name__ == "__main__":
    main()
