"""The module flow-engine loads through the ``flow_engine`` entry point: it registers ``webpage_text``.

Kept to imports that cost little (no httpx), because ``flow plugins`` and every ``flow run`` import
every plugin module.
"""

from __future__ import annotations

from collections.abc import Callable

from flow_engine.plugin import StepTypeInfo, hookimpl  # the plugin API: cheap to import

from .step import STEP_TYPE, WebPageStep


@hookimpl
def register_step_types(register: Callable[[StepTypeInfo], None]) -> None:
    register(StepTypeInfo(STEP_TYPE, WebPageStep, "fetch a web page and extract its readable text"))
