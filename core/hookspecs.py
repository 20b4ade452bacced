"""The hooks a flow-engine plugin can implement.

Every hook is synchronous (pluggy). ``register_*`` hooks receive a ``register`` callable and call it
once per thing they provide; the work itself is ``async def`` on the classes they register. Lifecycle
hooks (``before_*``, ``after_*``, ``on_*_error``) may be written as ``async def``: the runner awaits
them. A lifecycle hook that raises fails the flow or step it observes, so keep them small.

See docs/plugins.md for a tutorial and the reference of every hook.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    import click
    from pydantic_settings import BaseSettings

    from .plugin_types import ExecutorInfo, ModelProviderInfo, StepTypeInfo
    from .runtime_info import FlowEvent, StepEvent
    from .storage import StorageBackendInfo

PROJECT = "flow_engine"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_hookspecs(register: Callable[[Any], None]) -> None:
    """Add a plugin's own hooks: ``register(module_or_class)`` with ``@hookspec`` functions on it.

    Asked before any other hook, so other plugins may implement the hooks it adds (as pytest's
    ``pytest_addhooks``)."""


@hookspec
def register_settings(register: Callable[[type[BaseSettings]], None]) -> None:
    """Register a plugin's settings: ``register(MySettings)``, a pydantic-settings class with
    ``env_prefix="FLOW_ENGINE_"``. ``configure()`` accepts its fields; read them with
    ``get_engine().plugin_settings(MySettings)``."""


@hookspec
def register_step_types(register: Callable[[StepTypeInfo], None]) -> None:
    """Register step types: ``register(StepTypeInfo(name="my_type", step_class=MyStep))``."""


@hookspec
def register_storage_backends(register: Callable[[StorageBackendInfo], None]) -> None:
    """Register storage backends by URL scheme: ``register(StorageBackendInfo(name, schemes, factory))``."""


@hookspec
def register_model_providers(register: Callable[[ModelProviderInfo], None]) -> None:
    """Register in-process litellm custom providers:
    ``register(ModelProviderInfo(name, handler_factory))``."""


@hookspec
def register_executors(register: Callable[[ExecutorInfo], None]) -> None:
    """Register run executors (where submitted runs go): ``register(ExecutorInfo(name, factory))``.

    ``factory(engine)`` returns a ``flow_engine.plugin.RunExecutor``; import heavy clients inside it.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add click commands to the ``flow`` CLI: ``cli.add_command(my_command)``."""


@hookspec
def engine_started(engine: Any) -> None:
    """Once per engine, before its first run or LLM call (not when it is configured, nor for
    ``flow --help``): a plugin that listens to steps or LLM calls only when its settings say so
    registers its listeners here (``engine.plugins.register(...)``), so that nobody else pays for them.
    Raising marks the plugin failed; the engine goes on."""


@hookspec
def before_flow(event: FlowEvent) -> Any:
    """Called after a run row is created, before the flow's logic starts. May be ``async def``."""


@hookspec
def after_flow(event: FlowEvent) -> Any:
    """Called after a flow completed and its outputs were stored. May be ``async def``."""


@hookspec
def on_flow_error(event: FlowEvent) -> Any:
    """Called after a flow failed (``event.error`` set) and the failure was stored. May be ``async def``."""


@hookspec
def on_flow_stop(event: FlowEvent) -> Any:
    """Called after a run stopped without completing or failing, and that was stored: cancelled (``flow
    cancel``, Ctrl-C, its task cancelled) or waiting for input; ``event.status`` says which
    (``"cancelled"``, ``"waiting"``). May be ``async def``; keep it short, a cancellation is unwinding."""


@hookspec
def before_step(event: StepEvent) -> Any:
    """Called after a step row is created, before the step runs. May be ``async def``."""


@hookspec
def after_step(event: StepEvent) -> Any:
    """Called after a step completed and its output was stored. May be ``async def``."""


@hookspec
def on_step_error(event: StepEvent) -> Any:
    """Called after a step failed (``event.error`` set) and the failure was stored. May be ``async def``."""


@hookspec
def submit_metadata(flow_name: str) -> Any:
    """Entries to add to the ``flow_metadata`` of a run submitted in the background (a JSON-able dict,
    or None), asked in the submitting process before the run is stored: what its worker must know that
    only the submitter has, e.g. the submitter's trace context."""


@hookspec(firstresult=True)
def wrap_llm_call(call: Any) -> Any:
    """Wrap each attempt of each LLM call: implement it as ``@hookimpl(wrapper=True)``.

    ``call`` is a ``flow_engine.llm.hook.LLMCallInfo`` (kind, model, messages or prompt, params, attempt,
    step, run and call ids). The hook's result is an ``async`` function of no arguments that makes the
    call and returns litellm's response: ``send = yield`` gives the inner one, and the wrapper returns
    its own, which may await ``send()`` and observe the response (record, trace, count) or return an
    answer without calling it (replay, a test's script). Before ``yield`` the wrapper may change
    ``call.model`` (route the call elsewhere). Keep the synchronous part cheap: it runs on every attempt.
    """
