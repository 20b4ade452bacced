"""The per-step and per-LLM-call hooks of tracing: registered by the plugin when an engine with
tracing on starts (its first run or LLM call: ``engine_started``), so that with tracing off no step
pays for a listener."""

from __future__ import annotations

from typing import Any

from flow_engine.plugin import hookimpl

from .state import active as _tracer

PLUGIN_NAME = "otel.tracing"


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


@hookimpl(wrapper=True)
def wrap_llm_call(call: Any) -> Any:
    send = yield
    t = _tracer()
    if t is None:
        return send
    return t.wrap_call(call, send)
