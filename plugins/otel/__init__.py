"""OpenTelemetry traces and metrics of runs, steps and LLM calls (GenAI semantic conventions).

Off unless ``FLOW_ENGINE_OTEL=1``; opentelemetry is imported only then (``tracer.py``), so
``import flow_engine`` and ``flow --help`` stay fast. See docs/tracing.md.
"""

from __future__ import annotations

from typing import Any

from flow_engine.plugin import ConfigurationError, hookimpl


@hookimpl
def register_settings(register: Any) -> None:
    from .settings import OtelSettings

    register(OtelSettings)


def _tracer() -> Any:
    """The engine's tracer when tracing is on, else None (cheap: cached per engine)."""
    from .state import active

    return active()


@hookimpl
def engine_started(engine: Any) -> None:
    """Register the per-step and per-call hooks (``hooks.py``) when tracing is on, not before: a step
    hook that any plugin implements costs every step an event, traced or not."""
    from .state import active

    if active(engine) is None:
        return
    from . import hooks

    registry = engine.plugins
    if not registry.pm.is_registered(hooks):
        try:
            registry.register(hooks, name=hooks.PLUGIN_NAME)
        except ConfigurationError:  # registered meanwhile by another thread
            pass


@hookimpl
async def before_flow(event: Any) -> None:
    t = _tracer()
    if t is not None:
        await t.flow_started(event)


@hookimpl
def after_flow(event: Any) -> None:
    t = _tracer()
    if t is not None:
        t.flow_ended(event)


@hookimpl
def on_flow_error(event: Any) -> None:
    t = _tracer()
    if t is not None:
        t.flow_ended(event)


@hookimpl
def on_flow_stop(event: Any) -> None:
    t = _tracer()
    if t is not None:
        t.flow_ended(event)


@hookimpl
def submit_metadata(flow_name: str) -> Any:
    t = _tracer()
    return t.submit_metadata() if t is not None else None
