"""OpenTelemetry traces and metrics of runs, steps and LLM calls (GenAI semantic conventions).

Off unless ``FLOW_ENGINE_OTEL=1``; opentelemetry is imported only then (``tracer.py``), so
``import flow_engine`` and ``flow --help`` stay fast. See docs/tracing.md.
"""

from __future__ import annotations

from typing import Any

from flow_engine.plugin import hookimpl


@hookimpl
def register_settings(register: Any) -> None:
    from .settings import OtelSettings

    register(OtelSettings)


def _tracer() -> Any:
    """The engine's tracer when tracing is on, else None (cheap: cached per engine)."""
    from .state import active

    return active()


@hookimpl
async def before_flow(event: Any) -> None:
    t = _tracer()
    if t is not None:
        await t.flow_started(event)


@hookimpl
def after_flow(event: Any) -> None:
    t = _tracer()
    if t is not None:
        t.flow_ended(event, "completed")


@hookimpl
def on_flow_error(event: Any) -> None:
    t = _tracer()
    if t is not None:
        t.flow_ended(event, "failed")


@hookimpl
def before_step(event: Any) -> None:
    t = _tracer()
    if t is not None:
        t.step_started(event)


@hookimpl
def after_step(event: Any) -> None:
    t = _tracer()
    if t is not None:
        t.step_ended(event)


@hookimpl
def on_step_error(event: Any) -> None:
    t = _tracer()
    if t is not None:
        t.step_ended(event)


@hookimpl
def submit_metadata(flow_name: str) -> Any:
    t = _tracer()
    return t.submit_metadata() if t is not None else None


@hookimpl(wrapper=True)
def wrap_llm_call(call: Any) -> Any:
    send = yield
    t = _tracer()
    if t is None:
        return send
    return t.wrap_call(call, send)
