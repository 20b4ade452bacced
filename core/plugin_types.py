"""Typed records that ``register_*`` hooks hand to the engine."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StepTypeInfo:
    """A step type: its registry name and the base class users subclass."""

    name: str
    step_class: type
    description: str = ""
    plugin: str = field(default="", compare=False)


@dataclass(frozen=True)
class ModelProviderInfo:
    """An in-process litellm custom provider (``model="NAME/..."``).

    ``handler_factory`` is called with litellm imported and returns a ``litellm.CustomLLM`` instance, so
    plugins need not import litellm at import time. ``free`` providers record cost 0 instead of unknown.
    """

    name: str
    handler_factory: Callable[[], Any]
    description: str = ""
    supports_response_schema: bool = True
    free: bool = False
    plugin: str = field(default="", compare=False)


@dataclass(frozen=True)
class ExecutorInfo:
    """A run executor: where ``BaseFlow.submit()`` / ``flow run --background`` send a run.

    ``factory(engine)`` returns a ``flow_engine.plugin.RunExecutor``; it is called on first use, so
    a plugin can import its client library inside it and ``flow --help`` stays fast. ``in_process``
    executors run the flow inside the submitting process (``local``): the CLI refuses them for
    ``flow run --background``, because that process exits at once. ``default`` marks the executor of
    ``submit()`` when FLOW_ENGINE_EXECUTOR names none (the built-in ``local`` is); ``background_default``
    the one ``flow run --background`` uses when none is named and the configured one is in-process.
    """

    name: str
    factory: Callable[[Any], Any]
    description: str = ""
    in_process: bool = False
    background_default: bool = False
    default: bool = False
    plugin: str = field(default="", compare=False)


def __getattr__(name: str) -> Any:
    """``NewsSourceInfo`` moved to the news plugin; the old import keeps working for this release."""
    if name == "NewsSourceInfo":
        from .deprecation import moved

        return moved(__name__, name, "flow_engine.plugins.news")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
