"""``CeleryExecutor``: submitting a run is publishing one small message; workers do the rest."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from flow_engine.plugin import ExecutorUnavailable, RunExecutor

from .app import PUBLISH_RETRY, TASK_NAME, create_app, display_broker
from .settings import settings_of

if TYPE_CHECKING:  # pragma: no cover
    from flow_engine.engine import Engine
    from flow_engine.flows import BaseFlow
    from flow_engine.plugin import RunRecord


class CeleryExecutor(RunExecutor):
    name = "celery"

    def __init__(self, engine: Engine):
        self.engine = engine
        settings = settings_of(engine)
        self.app = create_app(settings)  # a missing broker URL or Celery is an error here
        self.queue = settings.celery_queue

    async def enqueue(self, run: RunRecord, flow_class: type[BaseFlow]) -> None:
        await asyncio.to_thread(self._publish, str(run.id))  # kombu publishes synchronously

    def _publish(self, run_id: str) -> None:
        try:
            self.app.send_task(
                TASK_NAME, args=[run_id], queue=self.queue, retry=True, retry_policy=PUBLISH_RETRY
            )
        except Exception as exc:
            url = display_broker(self.app.conf.broker_url)
            raise ExecutorUnavailable(f"cannot reach the Celery broker {url}: {exc}") from exc

    def run_worker(self, *, concurrency: int, queues: list[str], loglevel: str) -> int:
        from .worker import run_worker

        return run_worker(self.engine, concurrency=concurrency, queues=queues, loglevel=loglevel)

    def close(self) -> None:
        self.app.close()
