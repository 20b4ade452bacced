"""The parts of a Celery worker that need no broker: the app's delivery settings, and the task body
(one event loop per process; what it hands back to the queue). Real workers: test_workers.py."""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest
from celery.exceptions import Reject

from flow_engine import configure
from flow_engine.config import Settings
from flow_engine.errors import ConfigurationError
from flow_engine.plugins.celery import app as celery_app
from flow_engine.plugins.celery import worker
from flow_engine.storage import RunRecord, utcnow


def test_the_app_acknowledges_late_and_prefetches_nothing_extra():
    settings = Settings(broker_url="redis://127.0.0.1:6379/5", celery_queue="q1", celery_key_prefix="p:")
    app = celery_app.create_app(settings)
    conf = app.conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1 and conf.task_default_queue == "q1"
    assert conf.broker_transport_options["global_keyprefix"] == "p:"
    assert conf.broker_transport_options["visibility_timeout"] == 3600
    assert celery_app.TASK_NAME in app.tasks


def test_a_short_visibility_timeout_is_swept_often():
    options = celery_app.transport_options(Settings(celery_visibility_timeout=3))
    assert options["visibility_timeout"] == 3
    assert (options["unacked_restore_interval"], options["unacked_restore_throttle"]) == (1, 1)
    assert "global_keyprefix" not in options


def test_no_broker_url_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="FLOW_ENGINE_BROKER_URL"):
        celery_app.create_app(Settings())


def test_the_broker_password_is_hidden_in_messages():
    assert "hunter2" not in celery_app.display_broker("redis://:hunter2@127.0.0.1:6379/0")


def test_one_loop_per_process_runs_the_coroutines_of_every_pool_thread():
    loop = worker.loop_thread()
    assert worker.loop_thread() is loop

    async def where() -> int:
        return threading.get_ident()

    seen = set()
    threads = [threading.Thread(target=lambda: seen.add(loop.run(where()))) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert len(seen) == 1 and seen != {threading.get_ident()}


def test_the_task_returns_how_the_run_ended(engine):
    assert worker.execute_in_loop(str(uuid.uuid4())) == "missing"


def test_the_task_gives_back_a_run_it_only_watches_when_the_worker_stops(engine):
    store = configure(database_url="memory://").store
    record = RunRecord(flow_name="x", status="running", claimed_by="alive", last_heartbeat=utcnow())
    asyncio.run(store.create_run(record))
    loop = worker.loop_thread()
    loop.stopping.set()  # what the worker_shutting_down signal does
    try:
        with pytest.raises(Reject) as rejected:
            worker.execute_in_loop(str(record.id))
    finally:
        loop.stopping.clear()
    assert rejected.value.requeue is True and "owned by another worker" in str(rejected.value.reason)
    assert store.get_run(record.id).claimed_by == "alive"


def test_an_infrastructure_error_sends_the_run_back_to_the_queue(engine, monkeypatch):
    async def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError("the database went away")

    monkeypatch.setattr("flow_engine.executors.execute_submitted", broken)
    monkeypatch.setattr(worker, "RETRY_AFTER", 0.0)
    with pytest.raises(Reject) as rejected:
        worker.execute_in_loop(str(uuid.uuid4()))
    assert rejected.value.requeue is True and "the database went away" in str(rejected.value.reason)
