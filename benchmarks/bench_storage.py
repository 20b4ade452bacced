"""Benchmark (a): what persisting one plain Python step costs, against the bare database driver.

For each database (a SQLite file; PostgreSQL if reachable) it runs, several times and interleaved:

- ``flow-engine``: a flow of N plain steps (``BaseStep`` with ``async def run``) through the SQL
  backend; per-step cost = flow wall time / N (runner + storage, everything a user pays);
- ``bare driver``: the same rows written with sqlite3 / psycopg directly, in the same transactions
  (insert step + update run; update step + update run), with the same JSON payloads; on PostgreSQL
  also with ONE commit per step (all four statements in one transaction), the baseline of the
  target "within 1.3x of bare psycopg committing once per step";
- ``memory://`` once per repetition, to show the runner's own share.

It prints the median of each and the ratio flow-engine / bare driver (targets: < 0.5 ms per step on
SQLite, ratio <= 3). Usage::

    .venv/bin/python benchmarks/bench_storage.py [--steps 1000] [--repeat 7] [--postgres URL | --no-postgres]

PostgreSQL URL default: $FLOW_ENGINE_TEST_POSTGRES_URL, else postgresql+psycopg://postgres@127.0.0.1:5432/test
(each run uses a scratch schema that is dropped afterwards).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

import flow_engine
from flow_engine import BaseFlow, BaseStep
from flow_engine.engine import reset_engine

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


class AddOne(BaseStep):
    step_name = "add_one"

    class Inputs(BaseModel):
        x: int

    async def run(self, inputs: Inputs) -> int:
        return inputs.x + 1


def make_flow(n_steps: int) -> type[BaseFlow]:
    class Counting(BaseFlow):
        flow_name = "bench_counting"
        total_steps = n_steps

        async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
            x = 0
            for _ in range(n_steps):
                x = (await AddOne().execute({"x": x})).output_content
            return {"x": x}

    return Counting


def time_engine(url: str, n_steps: int) -> float:
    """Seconds per step of one flow of ``n_steps`` plain steps stored at ``url`` (store already open)."""
    flow = make_flow(n_steps)

    async def go() -> float:
        started = time.perf_counter()
        await flow().execute({})
        return (time.perf_counter() - started) / n_steps

    return asyncio.run(go())


def open_engine(url: str) -> None:
    flow_engine.configure(database_url=url)
    time_engine(url, 20)  # opens the store, creates/upgrades the schema, warms caches


# -- the bare-driver baseline -------------------------------------------------------------------
def _step_payloads(i: int, run_id: uuid.UUID, step_id: uuid.UUID, n_steps: int) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "inputs": json.dumps({"x": i}),
        "outputs": json.dumps({"output_content": i + 1}),
        "metadata": json.dumps(
            {
                "tokens_used": 0,
                "cost_estimate": None,
                "execution_time_ms": 0,
                "provider": None,
                "model": None,
                "step_type": "python",
                "llm_calls": 0,
                "unpriced_calls": 0,
                "run_id": str(run_id),
                "step_key": f"add_one#{i + 1}",
                "step_order": i + 1,
            }
        ),
        "now": now,
        "pct": 100.0 * (i + 1) / n_steps,
    }


RUN_COLUMNS = (
    "id, flow_name, status, execution_mode, step_progress, total_steps, progress_percentage, created_at, "
    "started_at, last_heartbeat, total_tokens, total_cost, unpriced_calls, cancel_requested, inputs"
)
STEP_COLUMNS = (
    "id, flow_run_id, llm_request_id, step_name, step_key, step_type, step_order, status, inputs, outputs, "
    "tokens_used, cost_estimate, execution_time_ms, error_message, step_metadata, created_at, completed_at"
)
START_RUN = "UPDATE flow_runs SET current_step = {p}, last_heartbeat = {p} WHERE id = {p}"
FINISH_STEP = (
    "UPDATE flow_step_runs SET tokens_used = {p}, cost_estimate = {p}, execution_time_ms = {p}, "
    "completed_at = {p}, llm_request_id = {p}, status = {p}, outputs = {p}, step_metadata = {p} "
    "WHERE id = {p}"
)
FINISH_RUN = (
    "UPDATE flow_runs SET step_progress = {p}, total_tokens = {p}, total_cost = {p}, unpriced_calls = {p}, "
    "last_heartbeat = {p}, progress_percentage = {p} WHERE id = {p}"
)


def _sql(template: str, mark: str) -> str:
    return template.replace("{p}", mark)


def bare_sqlite(path: Path, n_steps: int) -> float:
    import sqlite3

    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    run_id = uuid.uuid4()
    fmt = "%Y-%m-%d %H:%M:%S.%f"
    now = datetime.now(UTC).strftime(fmt)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(
        f"INSERT INTO flow_runs ({RUN_COLUMNS}) "
        "VALUES (?, 'bare', 'running', 'sync', 0, ?, 0.0, ?, ?, ?, 0, 0.0, 0, 0, '{}')",
        (run_id.hex, n_steps, now, now, now),
    )
    conn.execute("COMMIT")
    insert_step = f"INSERT INTO flow_step_runs ({STEP_COLUMNS}) VALUES ({', '.join(['?'] * 17)})"
    start_run, finish_step, finish_run = (_sql(t, "?") for t in (START_RUN, FINISH_STEP, FINISH_RUN))
    started = time.perf_counter()
    for i in range(n_steps):
        step_id = uuid.uuid4()
        p = _step_payloads(i, run_id, step_id, n_steps)
        ts = p["now"].strftime(fmt)
        key = f"add_one#{i + 1}"
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            insert_step,
            (
                step_id.hex,
                run_id.hex,
                None,
                "add_one",
                key,
                "python",
                i + 1,
                "running",
                p["inputs"],
                None,
                0,
                0.0,
                None,
                None,
                None,
                ts,
                None,
            ),
        )
        conn.execute(start_run, (key, ts, run_id.hex))
        conn.execute("COMMIT")
        ts = datetime.now(UTC).strftime(fmt)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            finish_step, (0, None, 0, ts, None, "completed", p["outputs"], p["metadata"], step_id.hex)
        )
        conn.execute(finish_run, (i + 1, 0, 0.0, 0, ts, p["pct"], run_id.hex))
        conn.execute("COMMIT")
    elapsed = (time.perf_counter() - started) / n_steps
    conn.close()
    return elapsed


def bare_postgres(url: str, n_steps: int, *, commit_once: bool = False) -> float:
    import psycopg
    from psycopg.types.json import Jsonb

    from flow_engine.plugins.sql.connect import parse_url

    conninfo = parse_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = psycopg.connect(conninfo)
    run_id = uuid.uuid4()
    now = datetime.now(UTC)
    conn.execute(
        f"INSERT INTO flow_runs ({RUN_COLUMNS}) "
        "VALUES (%s, 'bare', 'running', 'sync', 0, %s, 0.0, %s, %s, %s, 0, 0.0, 0, false, '{}')",
        (run_id, n_steps, now, now, now),
    )
    conn.commit()
    insert_step = f"INSERT INTO flow_step_runs ({STEP_COLUMNS}) VALUES ({', '.join(['%s'] * 17)})"
    start_run, finish_step, finish_run = (_sql(t, "%s") for t in (START_RUN, FINISH_STEP, FINISH_RUN))
    started = time.perf_counter()
    for i in range(n_steps):
        step_id = uuid.uuid4()
        p = _step_payloads(i, run_id, step_id, n_steps)
        key = f"add_one#{i + 1}"
        inputs, outputs, metadata = (Jsonb(json.loads(p[k])) for k in ("inputs", "outputs", "metadata"))
        conn.execute(
            insert_step,
            (
                step_id,
                run_id,
                None,
                "add_one",
                key,
                "python",
                i + 1,
                "running",
                inputs,
                None,
                0,
                0.0,
                None,
                None,
                None,
                p["now"],
                None,
            ),
        )
        conn.execute(start_run, (key, p["now"], run_id))
        if not commit_once:  # once per step: the step's start and finish in one transaction
            conn.commit()
        ts = datetime.now(UTC)
        conn.execute(finish_step, (0, None, 0, ts, None, "completed", outputs, metadata, step_id))
        conn.execute(finish_run, (i + 1, 0, 0.0, 0, ts, p["pct"], run_id))
        conn.commit()
    elapsed = (time.perf_counter() - started) / n_steps
    conn.close()
    return elapsed


# -- driver -------------------------------------------------------------------------------------
def measure(label: str, url: str, bare: Any, n_steps: int, repeat: int) -> dict[str, float]:
    ours: list[float] = []
    base: list[float] = []
    memory: list[float] = []
    for _ in range(repeat):
        open_engine(url)
        ours.append(time_engine(url, n_steps))
        reset_engine()
        base.append(bare(n_steps))
        open_engine("memory://")
        memory.append(time_engine("memory://", n_steps))
        reset_engine()
    result = {
        "flow_engine_ms": statistics.median(ours) * 1000,
        "bare_ms": statistics.median(base) * 1000,
        "runner_only_ms": statistics.median(memory) * 1000,
    }
    result["ratio"] = result["flow_engine_ms"] / result["bare_ms"]
    print(
        f"{label:<40} flow-engine {result['flow_engine_ms']:.3f} ms/step"
        f" | bare driver {result['bare_ms']:.3f} ms/step | ratio {result['ratio']:.2f}x"
        f" | runner alone (memory://) {result['runner_only_ms']:.3f} ms/step"
        f"   [medians of {repeat}; min flow-engine {min(ours) * 1000:.3f}, min bare {min(base) * 1000:.3f}]"
    )
    return result


def postgres_schema(base_url: str) -> tuple[str, Any] | None:
    """A scratch schema on the server (URL pointing into it, cleanup), or None if unreachable."""
    try:
        import psycopg

        from flow_engine.plugins.sql.connect import parse_url

        conninfo = parse_url(base_url).set(drivername="postgresql").render_as_string(hide_password=False)
        admin = psycopg.connect(conninfo, autocommit=True, connect_timeout=3)
    except Exception as exc:
        print(f"PostgreSQL    skipped: cannot connect to {base_url} ({type(exc).__name__}: {exc})")
        return None
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in base_url else "?"
    url = f"{base_url}{sep}options=-csearch_path%3D{schema}"

    def drop() -> None:
        admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        admin.close()

    return url, drop


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--postgres", default=os.environ.get("FLOW_ENGINE_TEST_POSTGRES_URL") or DEFAULT_PG)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    print(
        f"benchmark (a): persisted plain step, {args.steps} steps per flow, {args.repeat} repetitions\n"
        f"machine: {platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs; "
        f"Python {platform.python_version()}; date {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        measure("SQLite file", f"sqlite:///{db}", lambda n: bare_sqlite(db, n), args.steps, args.repeat)
    if not args.no_postgres:
        scratch = postgres_schema(args.postgres)
        if scratch is not None:
            url, drop = scratch
            try:
                from flow_engine.plugins.sql import migrate

                migrate.upgrade(url)
                measure("PostgreSQL", url, lambda n: bare_postgres(url, n), args.steps, args.repeat)
                measure(
                    "PostgreSQL (bare: one commit per step)",
                    url,
                    lambda n: bare_postgres(url, n, commit_once=True),
                    args.steps,
                    args.repeat,
                )
            finally:
                reset_engine()
                drop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
