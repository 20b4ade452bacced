"""The OpenTelemetry plugin's settings (docs/configuration.md, docs/tracing.md).

Where spans go is not a flow-engine setting: the application's tracer/meter provider when it set one,
else an OTLP exporter configured by the standard ``OTEL_*`` environment variables.
"""

from __future__ import annotations

import importlib.util

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class OtelSettings(BaseSettings):
    """Every ``FLOW_ENGINE_*`` variable of the ``otel`` plugin."""

    model_config = SettingsConfigDict(env_prefix="FLOW_ENGINE_", extra="ignore")

    otel: bool = Field(
        default=False,
        description="Emit OpenTelemetry traces and metrics of runs, steps and LLM calls "
        "(pip install 'flow-engine[otel]'; docs/tracing.md).",
    )

    @field_validator("otel")
    @classmethod
    def _installed(cls, on: bool) -> bool:
        """Asking for traces without the SDK is a setting error (exit code 2), not a failed run."""
        if on and not _sdk_installed():
            raise ValueError("needs OpenTelemetry, which is not installed: pip install 'flow-engine[otel]'")
        return on


def _sdk_installed() -> bool:
    try:
        return importlib.util.find_spec("opentelemetry.sdk") is not None
    except ImportError:  # no ``opentelemetry`` package at all
        return False
