"""The plugin author's API: everything a flow-engine plugin imports, from one cheap module.

``import flow_engine.plugin`` loads pluggy and the small records only; the store contract, the step
and executor base classes and the LLM helpers load on first access (PEP 562), so a plugin module that
imports them at the top still keeps ``flow --help`` fast.

A step type that calls the model::

    from flow_engine.plugin import LLMStep, StepOutput, StepTypeInfo, complete, hookimpl

    class ShoutStep(LLMStep):
        step_type = "shout"

        async def run(self, inputs):
            model = self.call_model()  # the per-call model: execute(model=) > step > run > setting
            call = await complete(self.build_messages(inputs), model=model, api_base=self.resolve_api_base())
            return StepOutput(content=(call.text or "").upper(), provider=call.provider, model=model)

    @hookimpl
    def register_step_types(register):
        register(StepTypeInfo("shout", ShoutStep, "the model's answer, louder"))

See docs/plugins.md for every hook and record.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    ConfigurationError,
    FlowEngineError,
    InputValidationError,
    LLMError,
    PluginConflictError,
    StorageError,
    UsageError,
)
from .hookspecs import hookimpl, hookspec
from .plugin_types import ExecutorInfo, ModelProviderInfo, StepTypeInfo
from .runtime_info import FlowEvent, StepEvent
from .urls import redact_url

if TYPE_CHECKING:  # pragma: no cover
    from .engine import get_engine
    from .executors import ExecutorUnavailable, RunExecutor, execute_submitted
    from .llm import LLMCall, complete, generate_image
    from .llm_step import LLMStep
    from .steps import BaseStep, StepOutput, StepResult, StepType
    from .storage import (
        CacheEntry,
        CacheModelStats,
        LLMRequestRecord,
        PruneResult,
        RunChanges,
        RunFilter,
        RunRecord,
        RunStatus,
        RunStore,
        RunTotals,
        StepChanges,
        StepRecord,
        StorageBackendInfo,
    )

# name -> module it lives in; loaded on first access
_LAZY = {
    "get_engine": "flow_engine.engine",
    "ExecutorUnavailable": "flow_engine.executors",
    "RunExecutor": "flow_engine.executors",
    "execute_submitted": "flow_engine.executors",
    "LLMCall": "flow_engine.llm",
    "complete": "flow_engine.llm",
    "generate_image": "flow_engine.llm",
    "LLMStep": "flow_engine.llm_step",
    "BaseStep": "flow_engine.steps",
    "StepOutput": "flow_engine.steps",
    "StepResult": "flow_engine.steps",
    "StepType": "flow_engine.steps",
    "CacheEntry": "flow_engine.storage",
    "CacheModelStats": "flow_engine.storage",
    "LLMRequestRecord": "flow_engine.storage",
    "PruneResult": "flow_engine.storage",
    "RunChanges": "flow_engine.storage",
    "RunFilter": "flow_engine.storage",
    "RunRecord": "flow_engine.storage",
    "RunStatus": "flow_engine.storage",
    "RunStore": "flow_engine.storage",
    "RunTotals": "flow_engine.storage",
    "StepChanges": "flow_engine.storage",
    "StepRecord": "flow_engine.storage",
    "StorageBackendInfo": "flow_engine.storage",
}

__all__ = [
    "BaseStep",
    "CacheEntry",
    "CacheModelStats",
    "ConfigurationError",
    "ExecutorInfo",
    "ExecutorUnavailable",
    "FlowEngineError",
    "FlowEvent",
    "InputValidationError",
    "LLMCall",
    "LLMError",
    "LLMRequestRecord",
    "LLMStep",
    "ModelProviderInfo",
    "PluginConflictError",
    "PruneResult",
    "RunChanges",
    "RunExecutor",
    "RunFilter",
    "RunRecord",
    "RunStatus",
    "RunStore",
    "RunTotals",
    "StepChanges",
    "StepEvent",
    "StepOutput",
    "StepRecord",
    "StepResult",
    "StepType",
    "StepTypeInfo",
    "StorageBackendInfo",
    "StorageError",
    "UsageError",
    "complete",
    "execute_submitted",
    "generate_image",
    "get_engine",
    "hookimpl",
    "hookspec",
    "redact_url",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'flow_engine.plugin' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # asked once
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
