"""The parts of a Celery worker that need no broker: the plugin's settings, the app's delivery settings,
and the task body (one event loop per process; what it hands back to the queue). Real workers:
test_workers.py and test_recovery.py."""

from __future__ import annotations

import ast
import asyncio
import threading
import uuid
from pathlib import Path

import pytest
from celery.exceptions import Reject

from flow_engine.config import Settings
from flow_engine.errors import ConfigurationError
from flow_engine.plugin import RunRecord
from flow_engine.plugins import celery as celery_plugin
from flow_engine.plugins.celery import app as celery_app
from flow_engine.plugins.celery import worker
from flow_engine.plugins.celery.settings import CelerySettings, settings_of
from flow_engine.storage import utcnow
from tests.python_source import parse

DOCS = Path(__file__).resolve().parents[3] / "docs"


def test_the_app_acknowledges_late_and_prefetches_nothing_extra():
    settings = CelerySettings(
        broker_url="redis://127.0.0.1:6379/5", celery_queue="q1", celery_key_prefix="p:"
    )
    app = celery_app.create_app(settings)
    conf = app.conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1 and conf.task_default_queue == "q1"
    assert conf.broker_transport_options["global_keyprefix"] == "p:"
    assert conf.broker_transport_options["visibility_timeout"] == 3600
    assert celery_app.TASK_NAME not in app.tasks  # submitters send it by name
    assert celery_app.TASK_NAME in worker.create_worker_app(settings).tasks


def test_a_short_visibility_timeout_is_swept_often():
    options = celery_app.transport_options(CelerySettings(celery_visibility_timeout=3))
    assert options["visibility_timeout"] == 3
    assert (options["unacked_restore_interval"], options["unacked_restore_throttle"]) == (1, 1)
    assert "global_keyprefix" not in options


def test_no_broker_url_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="FLOW_ENGINE_BROKER_URL"):
        celery_app.create_app(CelerySettings())


def test_the_broker_password_is_hidden_in_messages():
    assert "hunter2" not in celery_app.display_broker("redis://:hunter2@127.0.0.1:6379/0")


# -- settings -----------------------------------------------------------------------------------
def test_the_celery_settings_are_the_plugins_and_read_from_the_environment(engine, monkeypatch):
    monkeypatch.setenv("FLOW_ENGINE_BROKER_URL", "amqp://guest@127.0.0.1//")
    monkeypatch.setenv("FLOW_ENGINE_RECOVERY_INTERVAL", "2.5")
    settings = settings_of(engine)
    assert (settings.broker_url, settings.recovery_interval) == ("amqp://guest@127.0.0.1//", 2.5)
    assert settings_of(engine) is settings  # read once per engine
    assert (settings.celery_queue, settings.recovery_max_takeovers) == ("flow_engine", 3)
    assert not {"broker_url", "celery_queue", "recovery_interval"} & set(Settings.model_fields)  # not core's

    registered = []
    celery_plugin.register_settings(registered.append)
    assert registered == [CelerySettings]


def test_every_celery_setting_is_documented():
    """What tests/docs does for the core settings (and, once plugins register their settings, for
    these too)."""
    text = (DOCS / "configuration.md").read_text()
    background = (DOCS / "background.md").read_text()
    for name in CelerySettings.model_fields:
        variable = f"`FLOW_ENGINE_{name.upper()}`"
        assert variable in text, f"docs/configuration.md does not document {variable}"
        if name.startswith("recovery_"):
            assert variable in background, f"docs/background.md does not explain {variable}"


def test_the_plugins_modules_import_each_other_one_way():
    """Each module imports only those before it in this list, not even inside a function: no cycle."""
    order = ["settings", "app", "recovery", "worker", "executor", "__init__"]
    folder = Path(celery_plugin.__file__).parent
    for position, name in enumerate(order):
        tree = parse((folder / f"{name}.py").read_text())
        imported = {
            (node.module or "").split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.level == 1
        }
        later = imported & set(order[position:])
        assert not later, f"{name}.py imports {later}, which come after it"


# -- the task body ------------------------------------------------------------------------------
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


def test_a_delivery_of_a_run_a_live_worker_executes_does_nothing(engine):
    record = RunRecord(
        flow_name="x", status="running", claimed_by="alive", last_heartbeat=utcnow(), started_at=utcnow()
    )
    asyncio.run(engine.store.create_run(record))
    assert worker.execute_in_loop(str(record.id)) == "running"  # at once: no watching, no second copy
    run = engine.store.get_run(record.id)
    assert run.claimed_by == "alive" and run.last_heartbeat == record.last_heartbeat
    assert run.flow_metadata is None  # no takeover recorded


def test_an_infrastructure_error_sends_the_run_back_to_the_queue(engine, monkeypatch):
    async def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError("the database went away")

    monkeypatch.setattr(worker, "deliver", broken)
    monkeypatch.setattr(worker, "RETRY_AFTER", 0.0)
    with pytest.raises(Reject) as rejected:
        worker.execute_in_loop(str(uuid.uuid4()))
    assert rejected.value.requeue is True and "the database went away" in str(rejected.value.reason)
    assert worker.this_process().free_slots() == worker.this_process().concurrency  # slot given back
