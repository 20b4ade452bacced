"""Cancel, resume and answer from the page, through the same core functions and rules as ``flow
cancel``, ``flow resume`` and ``flow respond``.

A resumed or answered run executes inside the ``flow ui`` process, like ``flow resume`` in a terminal,
as a task on the server's event loop; the run page follows it live. Stopping the server stops it at
once (it is then found crashed by its heartbeat and can be resumed again). An answered run that was
submitted to a worker pool (``flow run --background``) goes back to its workers instead.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from flow_engine.plugin import FlowEngineError, RunStatus

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
        from flow_engine.plugin import get_engine
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
        await self._started(self._go(resume(run.id), run.id), run.id, load_run)
        return Outcome(True, f"Resuming: run {run.id.hex[:8]} goes on from its first unfinished step.")

    async def respond(self, run_id: uuid.UUID, name: str, answer: dict[str, Any]) -> Outcome:
        """:meth:`answer`, its refusal as an outcome for the page."""
        try:
            return Outcome(True, await self.answer(run_id, name, answer))
        except FlowEngineError as exc:
            return Outcome(False, str(exc))

    async def answer(self, run_id: uuid.UUID, name: str, answer: dict[str, Any]) -> str:
        """Record the answer (checked against the wait's schema: nothing is written if it is invalid),
        then continue the run in the background ("answered"), or hand it back to its executor
        ("handed-back"). A refusal is raised (``flow respond``'s errors)."""
        from flow_engine import flow_runner
        from flow_engine.plugin import get_engine
        from flow_engine.respond import answer_wait, hand_back

        flow, root = await answer_wait(run_id, name, answer)
        if await hand_back(root, type(flow)):
            return "handed-back"
        task = self._go(flow_runner.resume(flow, root), root.id)
        await self._started(task, root.id, get_engine().store.load_run)
        return "answered"

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

    def _go(self, work: Coroutine[Any, Any, Any], run_id: uuid.UUID) -> asyncio.Task[Any]:
        """Run a resume on the server's loop, kept referenced until it ends."""
        task = asyncio.get_running_loop().create_task(self._execute(work, run_id))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    @staticmethod
    async def _execute(work: Coroutine[Any, Any, Any], run_id: uuid.UUID) -> None:
        try:
            await work
        except Exception:  # the run records its own end (failed, waiting again); the server goes on
            log.info("run %s did not complete", run_id, exc_info=True)

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
