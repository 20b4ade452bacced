"""Registers the ``python`` step type: a ``BaseStep`` subclass with its own ``async def run``."""

from __future__ import annotations

from typing import Any

from flow_engine.plugin import BaseStep, StepType, StepTypeInfo, hookimpl


@hookimpl
def register_step_types(register: Any) -> None:
    register(StepTypeInfo(StepType.PYTHON, BaseStep, "plain Python code, no LLM call"))
