"""Cancel and resume from the page, through the same core functions and rules as ``flow cancel`` and
``flow resume``.

A resumed run executes inside the ``flow ui`` process, like ``flow resume`` in a terminal, as a task
on the server's event loop; the run page follows it live. Stopping the server stops it at once (it
is then found crashed by its heartbeat and can be resumed again).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from flow_engine.errors import FlowEngineError
from flow_engine.storage import RunStatus

log = logging.getLogger("flow_engine.ui")


@dataclass
class Outcome:
    ok: bool
    message: str


@dataclass
class Actions:
    """The app's running resumes (kept referenced until they end)."""

    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    async def cancel(self, run_id: uuid.UUID) -> Outcome:
        from flow_engine.resume import cancel

        try:
            run, status = await cancel(run_id)
        except FlowEngineError as exc:
            return Outcome(False, str(exc))
        if status == RunStatus.RUNNING.value:
            return Outcome(True, "Cancel requested: the run stops at its next step boundary.")
        if status == RunStatus.CANCELLED.value and run.status != RunStatus.CANCELLED.value:
            return Outcome(True, "Run cancelled.")
        return Outcome(False, f"The run had already ended ({status}); nothing to cancel.")

    async def resume(self, run_id: uuid.UUID) -> Outcome:
        """Check what ``flow resume`` checks, then start the resume in the background."""
        from flow_engine.engine import get_engine
        from flow_engine.resume import flow_class_for, is_stale, resume

        load_run = get_engine().store.load_run
        try:
            run = load_run(run_id)
            if run.parent_run_id is not None:
                return Outcome(False, f"This is a child run; resume its root run {run.parent_run_id}.")
            if run.status == RunStatus.COMPLETED.value:
                return Outcome(False, "The run already completed; nothing to resume.")
            if run.status in (RunStatus.RUNNING.value, RunStatus.PENDING.value) and not is_stale(run):
                return Outcome(
                    False, "The run is still running; cancel it first, or wait until it is crashed."
                )
            flow_class_for(run)  # its code must be importable here: say so now, not in the background
        except FlowEngineError as exc:
            return Outcome(False, str(exc))
        task = asyncio.get_running_loop().create_task(self._resume(resume, run.id))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        await self._started(task, run.id, load_run)
        return Outcome(True, f"Resuming: run {run.id.hex[:8]} goes on from its first unfinished step.")

    @staticmethod
    async def _started(task: asyncio.Task[Any], run_id: uuid.UUID, load_run: Any) -> None:
        """Wait (briefly) until the resume has marked the run running, so the page shows it live."""
        for _ in range(100):
            if task.done():
                return
            run = await asyncio.to_thread(load_run, run_id)
            if run.status == RunStatus.RUNNING.value and run.completed_at is None:
                return
            await asyncio.sleep(0.05)

    @staticmethod
    async def _resume(resume: Any, run_id: uuid.UUID) -> None:
        try:
            await resume(run_id)
        except Exception:  # the run records its own failure; the server goes on
            log.info("resumed run %s did not complete", run_id, exc_info=True)

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
