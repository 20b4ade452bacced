"""Which tracer serves the current engine: made once per engine, only when tracing is on."""

from __future__ import annotations

import weakref
from typing import Any

from flow_engine.plugin import get_engine

_by_engine: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_OFF = object()


def active(engine: Any = None) -> Any:
    """The tracer of ``engine`` (the current one by default), or None when tracing is off."""
    if engine is None:
        engine = get_engine()
    tracer = _by_engine.get(engine)
    if tracer is None:
        from .settings import OtelSettings

        if engine.plugin_settings(OtelSettings).otel:
            from .tracer import Tracer  # opentelemetry: imported only when tracing is on

            tracer = Tracer()
        else:
            tracer = _OFF
        _by_engine[engine] = tracer
    return None if tracer is _OFF else tracer
