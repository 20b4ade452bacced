"""Benchmark: the history commands on 1,000,000 runs against the same on 1,000 runs (SQLite, PostgreSQL).

Each store is filled by ``fill_history.fill_runs`` (3 steps and 3 LLM requests per run, a year of
history) and kept for the next time (a SQLite file per size in ``--data-dir``; a schema per size on
the PostgreSQL server, ``--pg-schema-prefix``); a store that is already complete is reused. Then, on
each store:

- each history command, in a ``flow`` process of its own (median wall time of ``--repeat``, after a
  warm-up): ``flow runs``, ``--flow <the common flow>``, ``--status failed``, ``--user``, ``--stale``,
  ``flow show <full id>``, ``flow show <8-char prefix>``, ``flow show`` of a run with a child run;
- the store calls behind them, in this process (median of ``--repeat * 20``).

Target: every command and call within 50 ms of its time on the 1,000-run store. Usage::

    .venv/bin/python benchmarks/bench_history.py [--runs 1000000] [--small 1000] [--repeat 5]
        [--data-dir DIR] [--postgres URL | --no-postgres] [--pg-schema-prefix NAME]

Filling 1,000,000 runs takes tens of minutes on a busy 2-core machine (SQLite and PostgreSQL alike);
``--runs 20000`` is a quick check. ``--drop`` removes the stores afterwards.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import header, machine
from benchmarks.fill_history import COMMON_FLOW, fill_runs

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TARGET_MS = 50.0
FLOW = str(Path(sys.executable).with_name("flow"))


def _conninfo(url: str) -> str:
    from flow_engine.plugins.sql.connect import parse_url

    return parse_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _count(url: str) -> int | None:
    """Runs in the store at ``url``; None when it has no tables (or cannot be opened)."""
    from sqlalchemy import text

    from flow_engine.plugins.sql.connect import create_sql_engine

    engine = create_sql_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM flow_runs")).scalar_one())
    except Exception:
        return None
    finally:
        engine.dispose()


def sqlite_store(folder: Path, runs: int) -> str:
    path = folder / f"runs_{runs}.db"
    url = f"sqlite:///{path}"
    if path.exists() and _count(url) == runs:
        return url
    for leftover in folder.glob(f"runs_{runs}.db*"):
        leftover.unlink()
    _fill(url, runs, f"SQLite file {path}")
    return url


def postgres_store(base: str, prefix: str, runs: int) -> str:
    import psycopg

    schema = f"{prefix}_{runs}"
    sep = "&" if "?" in base else "?"
    url = f"{base}{sep}options=-csearch_path%3D{schema}"
    with psycopg.connect(_conninfo(base), autocommit=True) as admin:
        exists = admin.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
        if exists and _count(url) == runs:
            return url
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.execute(f'CREATE SCHEMA "{schema}"')
    _fill(url, runs, f"PostgreSQL schema {schema}")
    return url


def _fill(url: str, runs: int, where: str) -> None:
    print(f"  filling {where} with {runs:,} runs ...", flush=True)
    started = time.perf_counter()
    fill_runs(url, runs)
    print(f"  filled in {time.perf_counter() - started:.0f} s", flush=True)


def samples(url: str) -> dict[str, str]:
    """Ids to look up: a run with a child run, its unique 8-character prefix, a user."""
    from sqlalchemy import text

    from flow_engine.plugins.sql.connect import create_sql_engine
    from flow_engine.plugins.sql.types import UUID

    engine = create_sql_engine(url)
    to_id = UUID().process_result_value
    try:
        with engine.connect() as conn:
            parents = conn.execute(
                text(
                    "SELECT parent_run_id FROM flow_runs WHERE parent_run_id IS NOT NULL "
                    "ORDER BY created_at DESC LIMIT 50"
                )
            ).scalars()
            user = conn.execute(
                text("SELECT user_id FROM flow_runs WHERE user_id IS NOT NULL LIMIT 1")
            ).scalar()
            parent_ids = [to_id(p, engine.dialect) for p in parents]
    finally:
        engine.dispose()
    from flow_engine.plugins.sql.store import SqlStore

    store = SqlStore(url)
    try:
        for parent in parent_ids:  # one whose 8-character prefix is unique
            assert parent is not None
            if store.run_ids_with_prefix(parent.hex[:8]) == [parent]:
                return {
                    "run": str(parent),
                    "prefix": parent.hex[:8],
                    "user": str(to_id(user, engine.dialect)),
                }
    finally:
        store.close()
    raise RuntimeError("no run with a child run and a unique 8-character prefix")


def commands(ids: dict[str, str]) -> list[tuple[str, list[str]]]:
    return [
        ("flow runs", ["runs"]),
        (f"flow runs --flow {COMMON_FLOW}", ["runs", "--flow", COMMON_FLOW]),
        ("flow runs --status failed", ["runs", "--status", "failed"]),
        ("flow runs --user ID", ["runs", "--user", ids["user"]]),
        ("flow runs --stale", ["runs", "--stale"]),
        ("flow show <full id> (with a child run)", ["show", ids["run"]]),
        ("flow show <8-char prefix>", ["show", ids["prefix"]]),
        ("flow show <full id> --json", ["show", ids["run"], "--json"]),
    ]


def time_command(url: str, argv: list[str], repeat: int) -> float:
    env = {**os.environ, "FLOW_ENGINE_DATABASE_URL": url, "NO_COLOR": "1"}

    def once() -> float:
        started = time.perf_counter()
        subprocess.run(
            [FLOW, *argv], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
        )
        return time.perf_counter() - started

    once()
    return statistics.median(once() for _ in range(repeat))


def calls(ids: dict[str, str]) -> list[tuple[str, Callable[[Any], Any]]]:
    from flow_engine.plugins.sql.repo import FlowRunRepo
    from flow_engine.storage import utcnow

    run, user = uuid.UUID(ids["run"]), uuid.UUID(ids["user"])

    def stale(store: Any) -> Any:
        from sqlalchemy.orm import Session

        with Session(store.engine) as session:
            now = utcnow()
            return FlowRunRepo(session).stale(now - timedelta(minutes=1), now - timedelta(days=1))

    return [
        ("get_run(full id)", lambda s: s.get_run(run)),
        ("run_ids_with_prefix(8 chars)", lambda s: s.run_ids_with_prefix(ids["prefix"])),
        ("list_runs(limit=20)", lambda s: s.list_runs(limit=20)),
        ("list_runs(flow_name=common)", lambda s: s.list_runs(flow_name=COMMON_FLOW, limit=20)),
        ("list_runs(status='failed')", lambda s: s.list_runs(status="failed", limit=20)),
        ("list_runs(status='running', all)", lambda s: s.list_runs(status="running", limit=1_000_000)),
        ("list_runs(user_id=...)", lambda s: s.list_runs(user_id=user, limit=20)),
        ("list_runs(parent_run_id=...) (child runs)", lambda s: s.list_runs(parent_run_id=run, limit=10_000)),
        ("list_steps(run)", lambda s: s.list_steps(run)),
        ("list_llm_requests(flow_run_id=run)", lambda s: s.list_llm_requests(flow_run_id=run)),
        ("stale runs (running + pending too long)", stale),
    ]


def time_call(store: Any, fn: Callable[[Any], Any], repeat: int) -> float:
    fn(store)

    def once() -> float:
        started = time.perf_counter()
        fn(store)
        return time.perf_counter() - started

    return statistics.median(once() for _ in range(repeat))


def bench(label: str, small_url: str, big_url: str, runs: int, small: int, repeat: int) -> bool:
    from flow_engine.plugins.sql.store import SqlStore

    ok = True
    print(f"\n### {label}: {runs:,} runs against {small:,} (median ms; target: within {TARGET_MS:.0f} ms)")
    print(f"  {'':<46} {f'{small:,} runs':>12} {f'{runs:,} runs':>14} {'extra':>9}")
    ids = {"small": samples(small_url), "big": samples(big_url)}
    rows = []
    for (name, small_argv), (_, big_argv) in zip(commands(ids["small"]), commands(ids["big"]), strict=True):
        a = time_command(small_url, small_argv, repeat) * 1000
        b = time_command(big_url, big_argv, repeat) * 1000
        rows.append((name, a, b))
    stores = {"small": SqlStore(small_url), "big": SqlStore(big_url)}
    try:
        for (name, small_fn), (_, big_fn) in zip(calls(ids["small"]), calls(ids["big"]), strict=True):
            a = time_call(stores["small"], small_fn, repeat * 20) * 1000
            b = time_call(stores["big"], big_fn, repeat * 20) * 1000
            rows.append((f"store: {name}", a, b))
    finally:
        for store in stores.values():
            store.close()
    for name, a, b in rows:
        verdict = "ok" if b - a <= TARGET_MS else "SLOW"
        ok = ok and verdict == "ok"
        print(f"  {name:<46} {a:>12.1f} {b:>14.1f} {b - a:>+9.1f}  {verdict}", flush=True)
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "flow-engine-history")
    parser.add_argument("--postgres", default=os.environ.get("FLOW_ENGINE_TEST_POSTGRES_URL") or DEFAULT_PG)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--pg-schema-prefix", default="flow_engine_history")
    parser.add_argument("--drop", action="store_true", help="Remove the filled stores afterwards.")
    args = parser.parse_args()
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    header(f"bench_history: {args.runs:,} runs against {args.small:,}")
    print(f"machine: {machine()}")
    ok = True
    if not args.no_sqlite:
        args.data_dir.mkdir(parents=True, exist_ok=True)
        small, big = (sqlite_store(args.data_dir, n) for n in (args.small, args.runs))
        ok = bench("SQLite file", small, big, args.runs, args.small, args.repeat) and ok
        if args.drop:
            for path in args.data_dir.glob("runs_*.db*"):
                path.unlink()
    if not args.no_postgres:
        try:
            import psycopg

            psycopg.connect(_conninfo(args.postgres), connect_timeout=3).close()
        except Exception as exc:
            print(f"\nPostgreSQL skipped: cannot connect to {args.postgres} ({type(exc).__name__}: {exc})")
            return 0 if ok else 1
        small, big = (
            postgres_store(args.postgres, args.pg_schema_prefix, n) for n in (args.small, args.runs)
        )
        ok = bench("PostgreSQL", small, big, args.runs, args.small, args.repeat) and ok
        if args.drop:
            with psycopg.connect(_conninfo(args.postgres), autocommit=True) as admin:
                for n in (args.small, args.runs):
                    admin.execute(f'DROP SCHEMA IF EXISTS "{args.pg_schema_prefix}_{n}" CASCADE')
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
