"""The Celery application of flow-engine, configured in code from the plugin's settings.

Submitters and workers build the same app from the same settings, so a run sent by one is understood
by the other: one task, ``flow_engine.execute_run(run_id)``, on ``FLOW_ENGINE_CELERY_QUEUE``. The task
carries only the run id; inputs, flow class and options are in the database both sides share. A
submitter sends the task by name; only a worker registers its body (``worker.py``), so this module
knows nothing of workers.

Delivery settings, and why:

- ``task_acks_late`` + ``task_reject_on_worker_lost``: a message is acknowledged when the run ends,
  not when it starts, so the run of a worker that dies mid-flow is delivered again (to another
  worker, which resumes it); ``worker_prefetch_multiplier=1``: a worker reserves no more runs than it
  executes at once, so a dead worker strands no queued ones.
- Redis ``visibility_timeout`` (``FLOW_ENGINE_CELERY_VISIBILITY_TIMEOUT``): how long an
  unacknowledged message waits before Redis gives it to another worker. It is *not* how soon the run
  of a dead worker is taken over: the workers' recovery scan (``recovery.py``) does that, after
  ``FLOW_ENGINE_STALE_AFTER``. A copy delivered while the run is running or ended does nothing. The
  restore sweep runs every ``visibility_timeout / 5`` seconds (at most every 10 s) instead of kombu's 100 s.
- A key prefix (``FLOW_ENGINE_CELERY_KEY_PREFIX``) separates several deployments (or test runs) on
  one Redis database.
- Publishing retries twice, quickly: an unreachable broker is reported in about a second, and the run
  marked failed, instead of a submitter hanging.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flow_engine.plugin import ConfigurationError

if TYPE_CHECKING:  # pragma: no cover
    from celery import Celery

    from .settings import CelerySettings

TASK_NAME = "flow_engine.execute_run"
PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0.0, "interval_step": 0.3, "interval_max": 0.5}
CONNECT_TIMEOUT = 3.0  # seconds to open a connection to the broker


def require_celery() -> Any:
    try:
        import celery
    except ImportError:
        raise ConfigurationError(
            "the celery executor needs Celery: pip install 'flow-engine[celery]'"
        ) from None
    return celery


def broker_url(settings: CelerySettings) -> str:
    if not settings.broker_url:
        raise ConfigurationError(
            "the celery executor needs a broker: set FLOW_ENGINE_BROKER_URL, "
            "e.g. FLOW_ENGINE_BROKER_URL=redis://127.0.0.1:6379/0"
        )
    return settings.broker_url


def display_broker(url: str) -> str:
    """The broker URL with its password hidden, for messages."""
    from kombu.utils.url import maybe_sanitize_url

    return str(maybe_sanitize_url(url))


def transport_options(settings: CelerySettings) -> dict[str, Any]:
    visibility = settings.celery_visibility_timeout
    options: dict[str, Any] = {
        "visibility_timeout": visibility,
        "unacked_restore_interval": max(1, min(10, int(visibility / 5))),
        "unacked_restore_throttle": 1,
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "max_retries": PUBLISH_RETRY["max_retries"],
    }
    if settings.celery_key_prefix:
        options["global_keyprefix"] = settings.celery_key_prefix
    return options


def create_app(settings: CelerySettings) -> Celery:
    """A Celery app for these settings (a worker registers the ``execute_run`` task on it)."""
    celery = require_celery()
    app = celery.Celery("flow_engine", broker=broker_url(settings), set_as_current=False)
    app.conf.update(
        task_default_queue=settings.celery_queue,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,  # results live in the database; no result backend
        task_serializer="json",
        accept_content=["json"],
        broker_transport_options=transport_options(settings),
        broker_connection_timeout=CONNECT_TIMEOUT,
        broker_connection_retry_on_startup=True,
        task_publish_retry_policy=PUBLISH_RETRY,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_hijack_root_logger=True,
        timezone="UTC",
    )
    return app


def waiting_messages(app: Celery, queue: str) -> int:
    """Messages waiting in ``queue`` (not those a worker holds): a passive declare, which Redis and
    RabbitMQ both answer. Redis keeps no empty queue, so "no such queue" is zero."""
    from amqp.exceptions import ChannelError

    with app.connection_for_read() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, timeout=CONNECT_TIMEOUT)
        try:
            declared = conn.default_channel.queue_declare(queue=queue, passive=True)
        except ChannelError as exc:  # RabbitMQ: NotFound; Redis: a ChannelError with code '404'
            if str(getattr(exc, "reply_code", "")) == "404":
                return 0
            raise
    return int(declared.message_count)
