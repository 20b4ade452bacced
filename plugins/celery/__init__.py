"""Executor ``celery``: submitted runs go through a broker (Redis, RabbitMQ) to ``flow worker`` processes.

Install with ``pip install 'flow-engine[celery]'``; set ``FLOW_ENGINE_BROKER_URL`` and a database
URL every process shares (PostgreSQL). Importing this plugin imports nothing of Celery (``flow
--help`` loads every plugin): the factory does, when the executor is first used.

Modules, each importing only those before it: ``settings`` (the plugin's ``FLOW_ENGINE_*``
settings), ``app`` (the Celery app and its delivery settings), ``executor`` (publishing a run),
``recovery`` (what a delivery does, and the scan that takes over the runs of dead workers),
``worker`` (the worker process: one event loop running many flows; the checks before it starts).
The atomic claim and resuming a run in place are core's (``RunStore.claim_run``,
``flow_engine.executors.execute_claimed``).
"""

from __future__ import annotations

from typing import Any

from flow_engine.plugin import ExecutorInfo, hookimpl


def make_executor(engine: Any) -> Any:
    from .executor import CeleryExecutor

    return CeleryExecutor(engine)


@hookimpl
def register_settings(register: Any) -> None:
    from .settings import CelerySettings  # pydantic-settings: imported only when settings are asked for

    register(CelerySettings)


@hookimpl
def register_executors(register: Any) -> None:
    register(
        ExecutorInfo(
            "celery",
            make_executor,
            "Celery workers (`flow worker`) via FLOW_ENGINE_BROKER_URL; pip install 'flow-engine[celery]'",
        )
    )
