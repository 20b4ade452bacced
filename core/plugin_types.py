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
class NewsSourceInfo:
    """A news source for the ``news_gathering`` step, named in its ``sources`` input.

    ``factory()`` returns an object with ``async def fetch(request) -> list[NewsItem | dict]`` (see
    ``flow_engine.plugins.news``); it is called per fetch, so importing a heavy client can wait until
    then. ``url_schemes`` lets the source handle URL entries (``https://...``) instead of its name.
    ``searches`` means the source already searched for the query: its items are not filtered by it again.
    ``unavailable`` says why it cannot work in this installation (``flow plugins`` shows it).
    """

    name: str
    factory: Callable[[], Any]
    description: str = ""
    url_schemes: tuple[str, ...] = ()
    searches: bool = False
    unavailable: str | None = None
    plugin: str = field(default="", compare=False)


@dataclass(frozen=True)
class ExecutorInfo:
    """A run executor: where ``BaseFlow.submit()`` / ``flow run --background`` send a run.

    ``factory(engine)`` returns a ``flow_engine.executors.RunExecutor``; it is called on first use, so
    a plugin can import its client library (Celery, Dramatiq, ...) inside it and ``flow --help`` stays
    fast. ``in_process`` executors run the flow inside the submitting process (``local``): the CLI
    refuses them for ``flow run --background``, because that process exits at once.
    """

    name: str
    factory: Callable[[Any], Any]
    description: str = ""
    in_process: bool = False
    plugin: str = field(default="", compare=False)
