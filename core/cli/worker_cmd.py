"""``flow worker``: start a worker of an executor (Celery) that executes submitted runs.

The command only parses options and hands over to the executor's ``run_worker``
(``flow_engine.plugins.celery.worker`` for Celery), which checks the broker and the database before
taking any work: a missing ``FLOW_ENGINE_BROKER_URL``, an unreachable broker or database, or a
database behind the current schema ends the command with exit 2 and one line saying which.
"""

from __future__ import annotations

import sys

import click

from flow_engine.cli.options import db_option

from .background import background_executor

DEFAULT_CONCURRENCY = 50


@click.command("worker")
@db_option
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(min=1),
    default=DEFAULT_CONCURRENCY,
    show_default=True,
    help="Flows this worker process runs at once (they share one event loop; LLM calls mostly wait).",
)
@click.option(
    "--queues",
    "-Q",
    multiple=True,
    metavar="NAME[,NAME]",
    help="Queues to take runs from; repeatable or comma-separated (default FLOW_ENGINE_CELERY_QUEUE).",
)
@click.option(
    "--loglevel",
    "-l",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], case_sensitive=False),
    default="INFO",
    show_default=True,
    help="Log level of the worker's log on stderr.",
)
@click.option(
    "--executor",
    metavar="NAME",
    help="Executor whose worker to start (default FLOW_ENGINE_EXECUTOR if it has workers, else the one "
    "a plugin marks for the background, e.g. celery).",
)
def worker(concurrency: int, queues: tuple[str, ...], loglevel: str, executor: str | None) -> None:
    """Start a worker that executes submitted runs (`flow run --background`, `BaseFlow.submit`).

    Needs FLOW_ENGINE_BROKER_URL and a database every process shares (FLOW_ENGINE_DATABASE_URL or
    --db, e.g. PostgreSQL). The flows must be importable here as they are for `flow run`. Workers
    take over the runs of a dead worker (no heartbeat for FLOW_ENGINE_STALE_AFTER) and resume them;
    completed steps are not run again. SIGTERM or Ctrl-C stops it at once: its running flows are
    recorded as interrupted and handed back to the queue, where the next worker resumes them
    (FLOW_ENGINE_WORKER_SHUTDOWN=finish lets them finish first instead).

    \b
    Exit codes: 0 stopped; 143 stopped by SIGTERM, 130 by Ctrl-C (runs handed
    back); 2 configuration error (no broker URL,
    broker or database unreachable, database schema behind).
    """
    from flow_engine.executors import get_executor

    names = [name.strip() for value in queues for name in value.split(",") if name.strip()]
    runner = get_executor(background_executor(executor))
    sys.exit(runner.run_worker(concurrency=concurrency, queues=names, loglevel=loglevel.upper()))
