"""Executor ``celery``: submitted runs go through a broker (Redis, RabbitMQ) to ``flow worker`` processes.

Install with ``pip install 'flow-engine[celery]'``; set ``FLOW_ENGINE_BROKER_URL`` and a database
URL every process shares (PostgreSQL). Importing this plugin imports nothing of Celery (``flow
--help`` loads every plugin): the factory does, when the executor is first used.

Modules: ``app`` (the Celery app and its delivery settings), ``executor`` (publishing a run),
``worker`` (the worker process: one event loop running many flows; the checks before it starts).
What makes redelivery safe (claim, watch, resume) is in ``flow_engine.executors``, shared with every
executor.
"""

from __future__ import annotations

from typing import Any

from flow_engine.hookspecs import hookimpl
from flow_engine.plugin_types import ExecutorInfo


def make_executor(engine: Any) -> Any:
    from .executor import CeleryExecutor

    return CeleryExecutor(engine)


@hookimpl
def register_executors(register: Any) -> None:
    register(
        ExecutorInfo(
            "celery",
            make_executor,
            "Celery workers (`flow worker`) via FLOW_ENGINE_BROKER_URL; pip install 'flow-engine[celery]'",
        )
    )
