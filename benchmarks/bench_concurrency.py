"""Benchmark (b): many concurrent persisted LLM flows against the same calls made with litellm directly.

A fake OpenAI-compatible server (``tests/fake_openai_server.py``) runs in its own process with a fixed
latency (default 100 ms), so it shares neither the event loop nor the GIL with the measured side. In
ONE event loop of this process, repeated and interleaved, it times:

- ``litellm direct`` (the baseline): ``--flows`` concurrent chains of ``--steps`` sequential
  ``litellm.acompletion`` calls (each prompt built from the previous answer), model
  ``openai/<name>`` at the server's ``api_base``, with the same keyword arguments the engine passes
  (``timeout``, ``max_retries=0``, ``num_retries=0``);
- ``flow-engine`` on each database (a SQLite file; PostgreSQL if reachable): the same number of
  concurrent ``BaseFlow`` runs of ``--steps`` ``UnstructuredStep`` steps making the same calls,
  everything recorded (run, step and ``llm_requests`` rows), rows counted afterwards; litellm runs on
  the same event loop as the flows, as it does for the baseline;
- the same with ``FLOW_ENGINE_LLM_PROCESSES=N`` (``--llm-processes``, default 2; 0: not run): litellm's
  calls made in N worker processes, its CPU on other cores than the flows' (the baseline has one);
- ``engine, no LLM`` (diagnostic): the same flows with plain Python steps that ``asyncio.sleep`` for
  the latency instead of calling a model, against the same sleeps without the engine: what the runner
  and the database cost at this concurrency, without litellm's CPU in the way.

While each side runs, a monitor task sleeps 5 ms in a loop and records how late it wakes up: the
event-loop stalls (max and p99 printed for every side). It prints medians over ``--repeat``
repetitions and ratios against the baseline measured in the same run. Targets (issue 3): flow-engine
within 1.2x of litellm direct, no event-loop stall over 50 ms. Usage::

    .venv/bin/python benchmarks/bench_concurrency.py [--flows 500] [--steps 3] [--latency-ms 100]
        [--repeat 5] [--model openai/gpt-4o-mini] [--postgres URL | --no-postgres] [--llm-processes 2]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.common import header  # noqa: E402

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
FLOW_NAME = "bench_concurrency"
MEMORY = "memory://"
MONITOR_INTERVAL = 0.005
STALL_TARGET_MS = 50.0
RATIO_TARGET = 1.2


# -- the fake server, in its own process --------------------------------------------------------
def start_server(latency_ms: float) -> tuple[subprocess.Popen[str], str]:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_openai_server", "--port", "0", "--latency-ms", str(latency_ms)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
        env=env,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("READY "):
        process.kill()
        raise RuntimeError(f"the fake OpenAI server did not start: {line!r}")
    return process, line.split()[1]


def reset_server(base_url: str) -> None:
    """Forget the requests the server logged (it keeps every one; thousands per repetition)."""
    import httpx

    httpx.post(f"{base_url.removesuffix('/v1')}/_fake/reset", json={}, timeout=10).raise_for_status()


# -- event-loop stall monitor -------------------------------------------------------------------
class StallMonitor:
    """Sleeps ``interval`` in a loop; each wake-up's lateness is one sample of the loop's responsiveness."""

    def __init__(self, interval: float = MONITOR_INTERVAL):
        self.interval = interval
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _watch(self) -> None:
        clock = time.perf_counter
        while True:
            before = clock()
            await asyncio.sleep(self.interval)
            self.lags.append(clock() - before - self.interval)

    def __enter__(self) -> StallMonitor:
        self._task = asyncio.get_running_loop().create_task(self._watch())
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._task is not None
        self._task.cancel()

    def max_ms(self) -> float:
        return max(self.lags, default=0.0) * 1000

    def p99_ms(self) -> float:
        if len(self.lags) < 2:
            return self.max_ms()
        return statistics.quantiles(self.lags, n=100, method="inclusive")[98] * 1000


@dataclass
class Sample:
    seconds: float
    cpu_seconds: (
        float  # of this whole process (every thread), which other work on the machine does not add to
    )
    stall_max_ms: float
    stall_p99_ms: float


@dataclass
class Series:
    label: str
    samples: list[Sample] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return statistics.median(s.seconds for s in self.samples)

    @property
    def cpu_seconds(self) -> float:
        return statistics.median(s.cpu_seconds for s in self.samples)

    @property
    def stall_max_ms(self) -> float:
        return statistics.median(s.stall_max_ms for s in self.samples)

    @property
    def worst_stall_ms(self) -> float:
        return max(s.stall_max_ms for s in self.samples)

    @property
    def stall_p99_ms(self) -> float:
        return statistics.median(s.stall_p99_ms for s in self.samples)


async def settle(limit: float = 10.0) -> None:
    """Wait until this process is idle: litellm finishes its logging and cost callbacks in background
    threads after a call has returned, and that work must not be billed to the next side measured."""
    deadline = time.perf_counter() + limit
    while time.perf_counter() < deadline:
        cpu = time.process_time()
        await asyncio.sleep(0.2)
        if time.process_time() - cpu < 0.01:  # under 5% of one core
            return


async def timed(work: Callable[[], Awaitable[Any]]) -> Sample:
    await settle()
    gc.collect()  # each side starts with a clean heap, not the previous side's garbage
    with StallMonitor() as monitor:
        await asyncio.sleep(0)  # let the monitor start
        cpu = time.process_time()
        started = time.perf_counter()
        await work()
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
    return Sample(elapsed, cpu, monitor.max_ms(), monitor.p99_ms())


# -- the two sides ----------------------------------------------------------------------------
def prompt_for(chain: int, previous: str | None) -> str:
    if previous is None:
        return f"Write three sentences about topic number {chain}."
    return f"Improve this text: {previous[-120:]}"


class Direct:
    """The baseline: litellm.acompletion with the engine's model, api_base and keyword arguments."""

    def __init__(self, model: str, base_url: str, timeout: float):
        from flow_engine.llm.loader import load_litellm

        self.litellm = load_litellm()  # same import settings as the engine (bundled cost map, quiet)
        self.kwargs = {
            "model": model,
            "api_base": base_url,
            "api_key": "test-key",
            "timeout": timeout,
            "max_retries": 0,
            "num_retries": 0,
        }

    async def chain(self, i: int, steps: int) -> str:
        text: str | None = None
        for _ in range(steps):
            messages = [{"role": "user", "content": prompt_for(i, text)}]
            response = await self.litellm.acompletion(messages=messages, **self.kwargs)
            text = response.choices[0].message.content
        return text or ""

    async def run(self, flows: int, steps: int) -> None:
        await asyncio.gather(*(self.chain(i, steps) for i in range(flows)))


def make_llm_flow(steps: int) -> type[Any]:
    from pydantic import BaseModel

    from flow_engine import BaseFlow, UnstructuredStep

    class Write(UnstructuredStep):
        step_name = "write"

        class Inputs(BaseModel):
            prompt: str

    class Chain(BaseFlow):
        flow_name = FLOW_NAME
        total_steps = steps

        class Inputs(BaseModel):
            chain: int

        async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
            text: str | None = None
            for _ in range(steps):
                result = await Write().execute({"prompt": prompt_for(inputs["chain"], text)})
                text = result.output_content
            return {"text": text}

    return Chain


def make_sleep_flow(steps: int, latency: float) -> type[Any]:
    from pydantic import BaseModel

    from flow_engine import BaseFlow, BaseStep

    class Wait(BaseStep):
        step_name = "wait"

        class Inputs(BaseModel):
            prompt: str

        async def run(self, inputs: Inputs) -> str:
            await asyncio.sleep(latency)
            return inputs.prompt.upper()

    class SleepChain(BaseFlow):
        flow_name = f"{FLOW_NAME}_no_llm"
        total_steps = steps

        class Inputs(BaseModel):
            chain: int

        async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
            text: str | None = None
            for _ in range(steps):
                result = await Wait().execute({"prompt": prompt_for(inputs["chain"], text)})
                text = result.output_content
            return {"text": text}

    return SleepChain


async def bare_sleeps(flows: int, steps: int, latency: float) -> None:
    async def chain(i: int) -> str:
        text: str | None = None
        for _ in range(steps):
            await asyncio.sleep(latency)
            text = prompt_for(i, text).upper()
        return text or ""

    await asyncio.gather(*(chain(i) for i in range(flows)))


def count_rows(flow_name: str) -> tuple[int, int, int]:
    """Completed runs of ``flow_name``, their completed steps and LLM requests, in the engine's store."""
    from sqlalchemy import func, select

    from flow_engine.engine import get_engine
    from flow_engine.plugins.sql.models import flow_runs, flow_step_runs, llm_requests

    store: Any = get_engine().store
    with store.engine.connect() as conn:
        c = flow_runs.c
        runs = select(c.id).where(c.flow_name == flow_name, c.status == "completed")
        n_runs = conn.execute(select(func.count()).select_from(runs.subquery())).scalar_one()
        n_steps = conn.execute(
            select(func.count())
            .select_from(flow_step_runs)
            .where(flow_step_runs.c.flow_run_id.in_(runs), flow_step_runs.c.status == "completed")
        ).scalar_one()
        n_requests = conn.execute(
            select(func.count()).select_from(llm_requests).where(llm_requests.c.flow_run_id.in_(runs))
        ).scalar_one()
    return int(n_runs), int(n_steps), int(n_requests)


@dataclass
class Database:
    label: str
    url: str
    cleanup: Callable[[], None] = lambda: None


def configure(url: str, base_url: str, model: str, llm_processes: int = 0) -> None:
    import flow_engine

    engine = flow_engine.configure(
        database_url=url, api_base=base_url, api_key="test-key", model=model, llm_processes=llm_processes
    )
    # open what the engine opens on first use (plugins, the store and its schema check) outside the timing
    engine.plugins.step_types()
    engine.plugins.model_providers()
    assert engine.store is not None


def postgres_schema(base_url: str) -> Database | None:
    """A scratch schema on the server (dropped afterwards), or None if the server is unreachable."""
    try:
        import psycopg

        from flow_engine.plugins.sql.connect import parse_url

        conninfo = parse_url(base_url).set(drivername="postgresql").render_as_string(hide_password=False)
        admin = psycopg.connect(conninfo, autocommit=True, connect_timeout=3)
    except Exception as exc:
        print(f"  PostgreSQL skipped: cannot connect to {base_url} ({type(exc).__name__}: {exc})")
        return None
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in base_url else "?"
    url = f"{base_url}{sep}options=-csearch_path%3D{schema}"
    from flow_engine.plugins.sql import migrate

    migrate.upgrade(url)

    def drop() -> None:
        admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        admin.close()

    return Database("PostgreSQL", url, drop)


def _with_workers(label: str) -> str:
    return f"{label}, LLM worker processes"


# -- driver -------------------------------------------------------------------------------------
async def measure(args: argparse.Namespace, base_url: str, databases: list[Database]) -> dict[str, Series]:
    from flow_engine.engine import get_engine

    latency = args.latency_ms / 1000
    configure(databases[0].url, base_url, args.model)
    direct = Direct(args.model, base_url, get_engine().settings.request_timeout)
    llm_flow = make_llm_flow(args.steps)
    sleep_flow = make_sleep_flow(args.steps, latency)

    async def engine_llm() -> None:
        await asyncio.gather(*(llm_flow().execute({"chain": i}) for i in range(args.flows)))

    async def engine_sleep() -> None:
        await asyncio.gather(*(sleep_flow().execute({"chain": i}) for i in range(args.flows)))

    series = {"direct": Series("litellm direct (baseline)")}
    for db in databases:
        series[db.label] = Series(f"flow-engine, {db.label}")
    workers = args.llm_processes
    if workers:
        for db in databases:
            series[_with_workers(db.label)] = Series(f"  same, FLOW_ENGINE_LLM_PROCESSES={workers}")
    series[MEMORY] = Series("flow-engine, memory://")
    series["bare_sleep"] = Series("asyncio.sleep chains, no engine (baseline)")
    series["engine_sleep"] = Series(f"flow-engine, no LLM, {databases[0].label}")

    # warm-up: litellm's lazy imports and first-call costs, the stores' schemas and statement caches
    await direct.run(min(50, args.flows), args.steps)
    for db in databases:
        for processes in {0, workers}:  # the workers start (and import litellm) here, not while timed
            configure(db.url, base_url, args.model, processes)
            await asyncio.gather(*(llm_flow().execute({"chain": i}) for i in range(min(50, args.flows))))
    reset_server(base_url)
    if args.gc_freeze:
        gc.collect()
        gc.freeze()

    expected = (args.flows, args.flows * args.steps, args.flows * args.steps)
    for rep in range(args.repeat):
        # alternate the order, so drift (other work on the machine) hits every side alike
        order: list[str] = ["direct", *[db.label for db in databases], MEMORY]
        if workers:
            order += [_with_workers(db.label) for db in databases]
        if rep % 2:
            order.reverse()
        for name in order:
            if name == "direct":
                series[name].samples.append(await timed(lambda: direct.run(args.flows, args.steps)))
            elif name == MEMORY:
                configure("memory://", base_url, args.model)
                series[name].samples.append(await timed(engine_llm))
            else:
                db = next(d for d in databases if name in (d.label, _with_workers(d.label)))
                configure(db.url, base_url, args.model, workers if name != db.label else 0)
                before = count_rows(FLOW_NAME)
                series[name].samples.append(await timed(engine_llm))
                after = count_rows(FLOW_NAME)
                got = tuple(a - b for a, b in zip(after, before, strict=True))
                if got != expected:
                    raise SystemExit(f"{db.label}: expected (runs, steps, requests) {expected}, stored {got}")
            reset_server(base_url)
        configure(databases[0].url, base_url, args.model)
        series["bare_sleep"].samples.append(await timed(lambda: bare_sleeps(args.flows, args.steps, latency)))
        series["engine_sleep"].samples.append(await timed(engine_sleep))
        print(
            f"  repetition {rep + 1}/{args.repeat}: "
            + ", ".join(
                f"{k} {v.samples[-1].seconds:.2f}s/{v.samples[-1].stall_max_ms:.0f}ms"
                for k, v in series.items()
            ),
            flush=True,
        )
    return series


def report(
    series: dict[str, Series], databases: list[Database], args: argparse.Namespace
) -> dict[str, float]:
    calls = args.flows * args.steps
    print(
        f"\n  {args.flows} concurrent flows x {args.steps} LLM steps = {calls} calls, server latency "
        f"{args.latency_ms:g} ms, model {args.model}; medians of {args.repeat} repetitions.\n"
        "  wall: elapsed time; ratio: against the baseline, of the medians (paired: median of the\n"
        "  per-repetition ratios); cpu: CPU time of this process, every thread; stall: how late a\n"
        f"  {MONITOR_INTERVAL * 1000:g} ms sleep woke up (max: median over repetitions of each one's max;"
        " worst: the max of all)"
    )
    print(
        f"  {'':<44} {'wall':>8} {'ratio':>6} {'paired':>7} {'cpu':>7} {'ratio':>6}"
        f" {'stall max':>10} {'worst':>7} {'p99':>6}"
    )
    results: dict[str, float] = {}

    def line(s: Series, base: Series, note: str = "") -> tuple[float, float]:
        ratio = s.seconds / base.seconds
        paired = statistics.median(
            a.seconds / b.seconds for a, b in zip(s.samples, base.samples, strict=True)
        )
        cpu_ratio = s.cpu_seconds / base.cpu_seconds
        print(
            f"  {s.label:<44} {s.seconds:>7.2f}s {ratio:>5.2f}x {paired:>6.2f}x {s.cpu_seconds:>6.2f}s"
            f" {cpu_ratio:>5.2f}x {s.stall_max_ms:>8.0f}ms {s.worst_stall_ms:>5.0f}ms"
            f" {s.stall_p99_ms:>4.0f}ms"
            f"  {note}",
            flush=True,
        )
        return ratio, paired

    base = series["direct"]
    line(base, base, f"({base.seconds / calls * 1e3:.2f} ms of wall time per call)")
    for db in databases:
        s = series[db.label]
        ratio, paired = line(s, base)
        verdict = "met" if ratio <= RATIO_TARGET else "MISSED"
        stalls = "met" if s.stall_max_ms <= STALL_TARGET_MS else "MISSED"
        print(
            f"  {'':<44} target <= {RATIO_TARGET}x of litellm direct: {verdict}; "
            f"no stall over {STALL_TARGET_MS:g} ms: {stalls} (litellm direct: {base.stall_max_ms:.0f} ms)"
        )
        results[f"{db.label}_ratio"] = ratio
        results[f"{db.label}_paired_ratio"] = paired
        results[f"{db.label}_cpu_ratio"] = s.cpu_seconds / base.cpu_seconds
        results[f"{db.label}_stall_max_ms"] = s.stall_max_ms
        if args.llm_processes:
            s = series[_with_workers(db.label)]
            ratio, paired = line(s, base)
            verdict = "met" if ratio <= RATIO_TARGET else "MISSED"
            stalls = "met" if s.stall_max_ms <= STALL_TARGET_MS else "MISSED"
            print(
                f"  {'':<44} with the workers: <= {RATIO_TARGET}x: {verdict}; stalls: {stalls}"
                " (cpu: this process's only; litellm's runs in the workers)"
            )
            results[f"{db.label}_workers_ratio"] = ratio
            results[f"{db.label}_workers_paired_ratio"] = paired
            results[f"{db.label}_workers_cpu_ratio"] = s.cpu_seconds / base.cpu_seconds
            results[f"{db.label}_workers_stall_max_ms"] = s.stall_max_ms
    print("  diagnostic: the same flows, nothing stored (the runner and the LLM call path alone)")
    line(series[MEMORY], base)
    print("  diagnostic, without litellm: steps sleep for the latency instead of calling a model")
    bare, ours = series["bare_sleep"], series["engine_sleep"]
    line(bare, bare)
    ratio, _ = line(ours, bare, f"({(ours.seconds - bare.seconds) / calls * 1e3:.2f} ms more per step)")
    stalls = "met" if ours.stall_max_ms <= STALL_TARGET_MS else "MISSED"
    own = f"the engine's own stalls (runner + {databases[0].label})"
    print(f"  {'':<44} {own} <= {STALL_TARGET_MS:g} ms: {stalls}")
    results["direct_s"] = base.seconds
    results["direct_stall_max_ms"] = base.stall_max_ms
    results["no_llm_ratio"] = ratio
    results["no_llm_stall_max_ms"] = ours.stall_max_ms
    return results


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--flows", type=int, default=500, help="concurrent flows (and litellm chains)")
    parser.add_argument("--steps", type=int, default=3, help="LLM steps per flow (calls per chain)")
    parser.add_argument("--latency-ms", type=float, default=100.0, help="the fake server's latency")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--model", default="openai/gpt-4o-mini", help="an openai/<name> model string")
    parser.add_argument("--postgres", default=os.environ.get("FLOW_ENGINE_TEST_POSTGRES_URL") or DEFAULT_PG)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument(
        "--llm-processes",
        type=int,
        default=2,
        help="also run each database's side with FLOW_ENGINE_LLM_PROCESSES=N (0: not)",
    )
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="gc.freeze() after the warm-up (both sides): what moving litellm's import-time objects out of "
        "the collector's way is worth",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_args(argv if argv is not None else [] if __name__ != "__main__" else None)
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")
    header("Concurrent LLM flows against litellm directly (fake OpenAI server in another process)")
    from flow_engine.engine import reset_engine

    server, base_url = start_server(args.latency_ms)
    databases: list[Database] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            databases.append(Database("SQLite file", f"sqlite:///{Path(tmp) / 'bench.db'}"))
            if not args.no_postgres:
                pg = postgres_schema(args.postgres)
                if pg is not None:
                    databases.append(pg)
            series = asyncio.run(measure(args, base_url, databases))
            reset_engine()
            return report(series, databases, args)
        finally:
            reset_engine()
            for db in databases:
                db.cleanup()
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    main()
