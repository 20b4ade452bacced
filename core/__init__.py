"""flow-engine: typed, persisted, resumable LLM workflows.

The public API and its complete guide live in ``flow_engine.public``; every name there can be imported
from ``flow_engine`` too. They load on first access (PEP 562), so ``import flow_engine`` and the ``flow``
CLI start fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .version import __version__

_PUBLIC = (
    "BaseFlow",
    "BaseStep",
    "BudgetExceeded",
    "FlowEngineError",
    "ImageStep",
    "InputValidationError",
    "LLMError",
    "NewsItem",
    "NewsStep",
    "PromptError",
    "ResumeMismatch",
    "RunCancelled",
    "RunStatus",
    "RunWaiting",
    "StepResult",
    "StepType",
    "StructuredOutputError",
    "StructuredStep",
    "UnstructuredStep",
    "UsageError",
    "cancel_run",
    "configure",
    "current_run_id",
    "fork_run",
    "hookimpl",
    "recover_runs",
    "respond_to_run",
    "resume_run",
)
__all__ = [*_PUBLIC, "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from .public import *  # noqa: F403

from .deprecation import install as _install_deprecations  # noqa: E402

_install_deprecations()  # old plugin-API import paths warn (see flow_engine.deprecation)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        from . import public

        return getattr(public, name)
    raise AttributeError(f"module 'flow_engine' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
