"""The Celery plugin's settings: ``FLOW_ENGINE_*`` environment variables, documented in
docs/configuration.md and docs/background.md.

They live here, not in the core ``Settings``: core knows no executor. Read with :func:`settings_of`,
once per engine (pydantic-settings is imported only when the executor is first used).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:  # pragma: no cover
    from flow_engine.engine import Engine


class CelerySettings(BaseSettings):
    """Every environment variable of the ``celery`` executor and ``flow worker``."""

    model_config = SettingsConfigDict(env_prefix="FLOW_ENGINE_", extra="ignore")

    broker_url: str | None = Field(default=None, description="Celery broker URL, e.g. redis://host:6379/0.")
    celery_queue: str = Field(default="flow_engine", description="Celery queue runs are sent to.")
    celery_visibility_timeout: float = Field(
        default=3600.0, gt=0, description="Seconds before Redis redelivers an unacknowledged run."
    )
    celery_key_prefix: str | None = Field(default=None, description="Prefix of every Redis key Celery uses.")
    recovery_interval: float = Field(
        default=10.0,
        ge=0,
        description="Each worker looks for runs of dead workers once in every such period (at a random "
        "moment in its second half); 0 turns the scan off.",
    )
    recovery_pending_after: float = Field(
        default=120.0,
        gt=0,
        description="A run pending this long while the queue is empty lost its message: a worker starts it.",
    )
    worker_shutdown: Literal["cancel", "finish"] = Field(
        default="cancel",
        description="On SIGTERM / Ctrl-C a worker cancels its runs at once and hands them back to the queue "
        "(cancel, exit 143 / 130), or lets them finish first (finish, exit 0).",
    )
    recovery_max_takeovers: int = Field(
        default=3,
        ge=1,
        description="Takeovers of one run after which it is failed instead (a run that kills its workers).",
    )


def settings_of(engine: Engine) -> CelerySettings:
    """The Celery settings of ``engine``: the environment, overridden by ``configure(...)``."""
    return engine.plugin_settings(CelerySettings)
