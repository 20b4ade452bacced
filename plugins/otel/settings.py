"""The OpenTelemetry plugin's settings (docs/configuration.md, docs/tracing.md).

Where spans go is not a flow-engine setting: the application's tracer/meter provider when it set one,
else an OTLP exporter configured by the standard ``OTEL_*`` environment variables.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class OtelSettings(BaseSettings):
    """Every ``FLOW_ENGINE_*`` variable of the ``otel`` plugin."""

    model_config = SettingsConfigDict(env_prefix="FLOW_ENGINE_", extra="ignore")

    otel: bool = Field(
        default=False,
        description="Emit OpenTelemetry traces and metrics of runs, steps and LLM calls "
        "(pip install 'flow-engine[otel]'; docs/tracing.md).",
    )
