"""Executor ``local``: a submitted run executes as a task on the submitter's own event loop.

The default executor: ``await MyFlow().submit(inputs)`` returns the run id at once and the flow runs
concurrently in the same process, with the same claim-then-execute path as a Celery worker
(``flow_engine.executors.execute_submitted``). The run lives and dies with that process and its event
loop: when ``asyncio.run()`` ends, unfinished runs are cancelled (recorded as ``cancelled``). For runs
that must outlive the submitter, or more machines, use the ``celery`` executor.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from typing import Any

from flow_engine.executors import worker_id
from flow_engine.flows import BaseFlow
from flow_engine.plugin import ExecutorInfo, RunExecutor, RunRecord, execute_submitted, hookimpl

log = logging.getLogger("flow_engine.executors.local")


class LocalExecutor(RunExecutor):
    name = "local"

    def __init__(self, engine: Any = None) -> None:
        self.owner = worker_id("local")
        self._tasks: set[asyncio.Task[str]] = set()  # the loop keeps only weak references to tasks

    async def enqueue(self, run: RunRecord, flow_class: type[BaseFlow]) -> None:
        # a fresh context: the run is not a child of whatever flow called submit()
        task = asyncio.get_running_loop().create_task(
            execute_submitted(run.id, self.owner, flow_class=flow_class),
            name=f"flow-run-{run.id}",
            context=contextvars.Context(),
        )
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[str]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:  # the run itself records flow errors
            log.error("background run task %s failed: %r", task.get_name(), task.exception())


@hookimpl
def register_executors(register: Any) -> None:
    description = "runs in the submitting process's event loop (the default)"
    register(ExecutorInfo("local", LocalExecutor, description, in_process=True, default=True))
