"""Fill a store with a large, realistic run history, fast: rows generated here and bulk-inserted.

``fill_runs(url, runs, steps_per_run=3, seed=0)`` creates the schema through the SQL plugin's
migrations (what ``flow db upgrade`` does), then inserts ``runs`` runs, their steps and one LLM
request per step, in chunks of one transaction each: SQLAlchemy Core ``executemany`` on SQLite,
``COPY`` on PostgreSQL. The history looks like a year of production use:

- about ten flow names, one of them (``article_processing``) four runs in ten;
- statuses mostly completed, some failed / cancelled / crashed; a few running (some of them with a
  stopped heartbeat: stale) and pending (some pending for too long), all among the newest runs;
- a few users (half of the runs have none); ``created_at`` spread over the last 365 days;
- one run in twenty is a child run of the run before it.

The same ``seed`` gives the same rows (ids included). Usage::

    .venv/bin/python benchmarks/fill_history.py URL [--runs 1000000] [--steps 3] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CHUNK = 5_000  # runs per transaction

FLOWS = [
    ("article_processing", 40),
    ("summarize_thread", 12),
    ("translate_document", 10),
    ("classify_ticket", 9),
    ("extract_invoice", 8),
    ("generate_cover_image", 6),
    ("news_digest", 6),
    ("answer_question", 4),
    ("sentiment_report", 3),
    ("weekly_report", 2),
]
COMMON_FLOW = FLOWS[0][0]
TERMINAL = [("completed", 88), ("failed", 7), ("cancelled", 3), ("crashed", 2)]
MODELS = ["offline/echo", "openai/gpt-4o-mini", "anthropic/claude-3-5-haiku"]
STEP_NAMES = ["extract_key_points", "summarize", "generate_title", "classify", "translate", "review"]
YEAR = timedelta(days=365)


RUN_COLUMNS = (
    "id",
    "user_id",
    "flow_name",
    "parent_run_id",
    "run_key",
    "status",
    "execution_mode",
    "current_step",
    "step_progress",
    "total_steps",
    "progress_percentage",
    "created_at",
    "started_at",
    "completed_at",
    "last_heartbeat",
    "total_tokens",
    "total_cost",
    "unpriced_calls",
    "execution_time_ms",
    "cancel_requested",
    "inputs",
    "outputs",
    "flow_metadata",
    "error_message",
    "claimed_by",
)
REQUEST_COLUMNS = (
    "id",
    "flow_run_id",
    "step_run_id",
    "call_id",
    "kind",
    "model",
    "provider",
    "api_base",
    "request_messages",
    "request_params",
    "response",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost",
    "latency_ms",
    "attempt",
    "status",
    "error_message",
    "created_at",
)
STEP_COLUMNS = (
    "id",
    "flow_run_id",
    "llm_request_id",
    "step_name",
    "step_key",
    "step_type",
    "step_order",
    "status",
    "inputs",
    "outputs",
    "tokens_used",
    "cost_estimate",
    "execution_time_ms",
    "error_message",
    "step_metadata",
    "created_at",
    "completed_at",
)
TOPICS = 1_000  # distinct payloads, serialized once: generating 7 million rows is the slow part
_V4 = (4 << 76) | (0x8 << 60)
_V4_CLEAR = ~((0xF << 76) | (0xC << 60))
_ERRORS = {
    "failed": "step 'summarize' failed: RateLimitError: too many requests",
    "cancelled": "cancelled (flow cancel)",
    "crashed": "no heartbeat since earlier; its process probably died",
}
RATE_LIMITED = "RateLimitError: too many requests"


def _hex_id(rng: random.Random) -> str:
    """A random version-4 UUID as 32 hex digits (how SQLite stores ids; PostgreSQL reads it too)."""
    return f"{(rng.getrandbits(128) & _V4_CLEAR) | _V4:032x}"


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


class _Payloads:
    """The JSON texts of runs, steps and requests, made once per topic and step name."""

    def __init__(self) -> None:
        self.run_inputs = [
            _dumps({"topic": f"topic {t}", "url": f"https://example.com/a/{t}"}) for t in range(TOPICS)
        ]
        self.step_inputs = [_dumps({"text": f"topic {t}"}) for t in range(TOPICS)]
        self.answers = {
            (name, t): f"{name} of topic {t}: " + "lorem ipsum dolor sit amet " * 4
            for name in STEP_NAMES
            for t in range(TOPICS)
        }
        self.run_outputs = [
            _dumps({"title": f"About topic {t}", "summary": self.answers[(STEP_NAMES[0], t)]})
            for t in range(TOPICS)
        ]
        self.step_outputs = {key: _dumps({"content": answer}) for key, answer in self.answers.items()}
        self.responses = {
            key: _dumps({"content": answer, "finish_reason": "stop"}) for key, answer in self.answers.items()
        }
        self.messages = {
            (name, t): _dumps(
                [
                    {"role": "system", "content": "You are a careful editor."},
                    {"role": "user", "content": f"{name}: topic {t}. " + "context " * 20},
                ]
            )
            for name in STEP_NAMES
            for t in range(TOPICS)
        }
        self.params = _dumps({"temperature": 0.2, "max_tokens": 800})
        self.metadata = {model: _dumps({"model": model}) for model in MODELS}


def _time(epoch_us: int) -> str:
    """UTC wall time as SQLAlchemy writes it on SQLite (PostgreSQL reads it as UTC with "+00")."""
    return (_EPOCH + timedelta(microseconds=epoch_us)).isoformat(sep=" ", timespec="microseconds")


_EPOCH = datetime(1970, 1, 1)


def _pick(rng: random.Random, names: list[str], weights: list[int]) -> Any:
    """A chooser of ``names`` with integer ``weights`` (faster than ``rng.choices`` per row)."""
    table: list[str] = []
    for name, weight in zip(names, weights, strict=True):
        table += [name] * weight
    return lambda: table[int(rng.random() * len(table))]


def live_counts(runs: int) -> tuple[int, int]:
    """How many of the newest runs are running and pending: a handful, whatever the history's size."""
    running = min(40, max(1, runs // 500)) if runs >= 10 else 0
    pending = min(20, max(1, runs // 1_000)) if runs >= 10 else 0
    return running, pending


Tables = tuple[tuple[str, tuple[str, ...]], ...]
Rows = tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]


def generate(runs: int, steps_per_run: int, seed: int, now: datetime) -> Iterator[Rows]:
    """(runs, llm_requests, steps) rows as tuples in ``*_COLUMNS`` order, chunk after chunk, oldest runs
    first. Ids are 32 hex digits, times UTC wall-clock text, JSON columns JSON text; None is NULL."""
    rng = random.Random(seed)
    payloads = _Payloads()
    flow = _pick(rng, [n for n, _ in FLOWS], [w for _, w in FLOWS])
    terminal = _pick(rng, [s for s, _ in TERMINAL], [w for _, w in TERMINAL])
    users: list[str | None] = [_hex_id(rng) for _ in range(5)] + [None] * 5  # half: no user
    running, pending = live_counts(runs)
    now_us = int((now.astimezone(UTC).replace(tzinfo=None) - _EPOCH).total_seconds() * 1_000_000)
    year_us = int(YEAR.total_seconds() * 1_000_000)
    start_us = now_us - year_us
    spacing_us = year_us // max(runs, 1)
    previous_top: tuple[str, int] | None = None
    children = 0
    for first in range(0, runs, CHUNK):
        run_rows: list[tuple[Any, ...]] = []
        request_rows: list[tuple[Any, ...]] = []
        step_rows: list[tuple[Any, ...]] = []
        for index in range(first, min(first + CHUNK, runs)):
            run_id = _hex_id(rng)
            created = start_us + spacing_us * index + rng.randrange(1_000_000)
            from_end = runs - index
            parent = run_key = None
            flow_name = flow()
            if from_end <= running:
                status = "running"
            elif from_end <= running + pending:
                status = "pending"
            else:
                status = terminal()
                if previous_top is not None and rng.random() < 0.05:
                    parent, parent_created = previous_top
                    children += 1
                    created = parent_created + 500_000
                    run_key = f"{flow_name}#{children}"
            if parent is None:
                previous_top = (run_id, created)
            heartbeat = None
            if status == "running":  # one in four has a stopped heartbeat (its process died)
                heartbeat = _time(now_us - (7_200_000_000 if from_end % 4 == 0 else 5_000_000))
            if status == "pending" and from_end % 5 == 0:  # queued two days ago, never picked up
                created = now_us - 172_800_000_000
            step_count = 0 if status == "pending" else steps_per_run
            if status == "running":
                step_count = max(1, steps_per_run - 1)
            topic = rng.randrange(TOPICS)
            step_ms = 400 + rng.randrange(2_000)
            tokens, cost, completed_steps = 0, 0.0, 0
            for order in range(1, step_count + 1):
                step_id, request_id = _hex_id(rng), _hex_id(rng)
                name = STEP_NAMES[(order - 1) % len(STEP_NAMES)]
                key = (name, topic)
                step_created = created + (20 + order * step_ms) * 1000
                step_status = "completed"
                if order == step_count and status in ("failed", "running", "crashed"):
                    step_status = "failed" if status == "failed" else "running"
                done = step_status != "running"
                ok = step_status == "completed"
                completed_steps += ok
                prompt_tokens = 150 + (topic * 7 + order) % 300 if done else 0
                completion_tokens = 40 + (topic * 13 + order) % 200 if done else 0
                step_tokens = prompt_tokens + completion_tokens
                step_cost = step_tokens * 0.0000006
                tokens += step_tokens
                cost += step_cost
                model = MODELS[order % len(MODELS)]
                error = None if step_status != "failed" else RATE_LIMITED
                step_time = _time(step_created)
                request_rows.append(
                    (
                        request_id,
                        run_id,
                        step_id,
                        _hex_id(rng),
                        "completion",
                        model,
                        model.split("/", 1)[0],
                        None,
                        payloads.messages[key],
                        payloads.params,
                        payloads.responses[key] if done else None,
                        prompt_tokens,
                        completion_tokens,
                        step_tokens,
                        step_cost if done else None,
                        step_ms if done else None,
                        1,
                        "failed" if error else "completed",
                        error,
                        step_time,
                    )
                )
                step_rows.append(
                    (
                        step_id,
                        run_id,
                        request_id,
                        name,
                        name if order <= len(STEP_NAMES) else f"{name}#{order}",
                        "unstructured_llm",
                        order,
                        step_status,
                        payloads.step_inputs[topic],
                        payloads.step_outputs[key] if ok else None,
                        step_tokens,
                        step_cost,
                        step_ms if done else None,
                        error,
                        payloads.metadata[model],
                        step_time,
                        _time(step_created + step_ms * 1000) if done else None,
                    )
                )
            ended = status not in ("running", "pending")
            run_ms = 50 + step_count * step_ms
            run_rows.append(
                (
                    run_id,
                    users[int(rng.random() * len(users))],
                    flow_name,
                    parent,
                    run_key,
                    status,
                    "background" if status == "pending" else "sync",
                    STEP_NAMES[(step_count - 1) % len(STEP_NAMES)] if step_count else None,
                    completed_steps,
                    steps_per_run,
                    100.0 * completed_steps / max(steps_per_run, 1),
                    _time(created),
                    _time(created + 20_000) if status != "pending" else None,
                    _time(created + run_ms * 1000) if ended else None,
                    heartbeat,
                    tokens,
                    cost,
                    0,
                    run_ms if ended else None,
                    False,
                    payloads.run_inputs[topic],
                    payloads.run_outputs[topic] if status == "completed" else None,
                    None,
                    _ERRORS.get(status),
                    "worker-1" if status == "running" and from_end % 2 else None,
                )
            )
        yield run_rows, request_rows, step_rows


def fill_runs(url: str, runs: int, steps_per_run: int = 3, *, seed: int = 0) -> None:
    """Create the schema at ``url`` (migrations, as ``flow db upgrade``) and insert ``runs`` runs with
    ``steps_per_run`` steps each and one LLM request per step (see the module docstring)."""
    from flow_engine.plugins.sql import migrate
    from flow_engine.plugins.sql.connect import create_sql_engine

    migrate.upgrade(url)
    engine = create_sql_engine(url)
    now = datetime.now(UTC)
    tables = (("flow_runs", RUN_COLUMNS), ("llm_requests", REQUEST_COLUMNS), ("flow_step_runs", STEP_COLUMNS))
    try:
        if engine.dialect.name == "postgresql":
            _fill_postgres(engine, tables, generate(runs, steps_per_run, seed, now))
        else:
            _fill_core(engine, tables, generate(runs, steps_per_run, seed, now))
    finally:
        engine.dispose()


def _fill_core(engine: Any, tables: Tables, chunks: Iterator[Rows]) -> None:
    """One ``executemany`` per table and chunk (rows in the driver's form), one transaction per chunk."""
    sqlite = engine.dialect.name == "sqlite"
    mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
    statements = [
        f"INSERT INTO {name} ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))})"
        for name, columns in tables
    ]
    with engine.connect() as conn:
        driver = conn.connection.driver_connection  # pragmas outside SQLAlchemy's transaction
        if sqlite:
            driver.execute("PRAGMA synchronous = OFF")  # a bulk load: durable at the end is enough
            driver.execute("PRAGMA cache_size = -512000")  # 512 MB: the indexes of random ids stay cached
        for chunk in chunks:
            with conn.begin():
                for sql, rows in zip(statements, chunk, strict=True):
                    if rows:
                        conn.exec_driver_sql(sql, rows)
        if sqlite:
            driver.execute("PRAGMA synchronous = NORMAL")
            driver.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            driver.execute("ANALYZE")


def _copy_text(value: Any) -> str:
    if value is None:
        return "\\N"
    if value is True or value is False:
        return "t" if value else "f"
    return str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def _fill_postgres(engine: Any, tables: Tables, chunks: Iterator[Rows]) -> None:
    """``COPY ... FROM STDIN`` in text format, a transaction per chunk; times get "+00" (they are UTC)."""
    times = {"created_at", "started_at", "completed_at", "last_heartbeat"}
    raw = engine.raw_connection()
    try:
        conn = raw.driver_connection
        for chunk in chunks:
            with conn.transaction():
                cursor = conn.cursor()
                for (name, columns), rows in zip(tables, chunk, strict=True):
                    if not rows:
                        continue
                    is_time = [c in times for c in columns]
                    lines = []
                    for row in rows:
                        lines.append(
                            "\t".join(
                                _copy_text(v) + ("+00" if t and v is not None else "")
                                for v, t in zip(row, is_time, strict=True)
                            )
                        )
                    with cursor.copy(f"COPY {name} ({', '.join(columns)}) FROM STDIN") as copy:
                        copy.write("\n".join(lines) + "\n")
        conn.autocommit = True
        for name, _ in tables:
            conn.execute(f"VACUUM ANALYZE {name}")
    finally:
        raw.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.perf_counter()
    fill_runs(args.url, args.runs, args.steps, seed=args.seed)
    print(f"{args.runs:,} runs in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
