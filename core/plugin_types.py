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
