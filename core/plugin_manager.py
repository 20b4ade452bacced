"""Loading plugins from entry points and asking them what they provide.

Loading is lazy (first use, never at ``import flow_engine``) and forgiving: a plugin that fails to
import is recorded with its error and reported by ``flow plugins`` and a warning; the rest still load.
"""

from __future__ import annotations

import inspect
import logging
import threading
import warnings
from dataclasses import dataclass, field, replace
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

import pluggy

from . import hookspecs
from .errors import ConfigurationError, PluginConflictError
from .plugin_types import ExecutorInfo, ModelProviderInfo, NewsSourceInfo, StepTypeInfo

if TYPE_CHECKING:  # pragma: no cover - storage pulls in pydantic; `flow --help` imports this module
    from .storage import StorageBackendInfo

log = logging.getLogger("flow_engine.plugins")

ENTRY_POINT_GROUP = "flow_engine"
BUILTIN_DISTRIBUTION = "flow-engine"
_REGISTRY_HOOKS = (
    "register_step_types",
    "register_storage_backends",
    "register_model_providers",
    "register_news_sources",
    "register_executors",
)


@dataclass
class PluginStatus:
    """What ``flow plugins`` reports for one plugin."""

    name: str
    module: str
    distribution: str | None
    version: str | None
    status: str  # loaded | failed | disabled | not-selected
    error: str | None = None
    provides: dict[str, list[str]] = field(default_factory=dict)

    @property
    def builtin(self) -> bool:
        return self.distribution == BUILTIN_DISTRIBUTION


class PluginRegistry:
    """The pluggy manager plus the typed registries built from its ``register_*`` hooks."""

    def __init__(self, *, only: set[str] | None = None, disabled: set[str] | None = None):
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.statuses: list[PluginStatus] = []
        self._only = only
        self._disabled = disabled or set()
        self._lock = threading.RLock()
        self._step_types: dict[str, StepTypeInfo] | None = None
        self._backends: list[StorageBackendInfo] | None = None
        self._providers: dict[str, ModelProviderInfo] | None = None
        self._executors: dict[str, ExecutorInfo] | None = None
        self._step_hooks: bool | None = None
        self._load_entry_points()

    # -- loading ----------------------------------------------------------------------------
    def _load_entry_points(self) -> None:
        owners: dict[str, PluginStatus] = {}
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = ep.dist.name if ep.dist else None
            version = ep.dist.version if ep.dist else None
            status = PluginStatus(ep.name, ep.value, dist, version, "loaded")
            self.statuses.append(status)
            if ep.name in self._disabled:
                status.status = "disabled"
                continue
            if self._only is not None and dist != BUILTIN_DISTRIBUTION and ep.name not in self._only:
                status.status = "not-selected"
                continue
            first = owners.setdefault(ep.name, status)
            if first is not status:  # pluggy would refuse the name; say who holds it
                self._fail(
                    status,
                    f"plugin name '{ep.name}' is already taken by {first.module} "
                    f"(distribution {first.distribution}); rename the entry point",
                )
                continue
            try:
                plugin = ep.load()
                self.pm.register(plugin, name=ep.name)
            except Exception as exc:  # a broken plugin must not take the engine down
                self._fail(status, f"{type(exc).__name__}: {exc}")

    def _fail(self, status: PluginStatus, error: str) -> None:
        """Mark a plugin failed and warn once; ``flow plugins`` shows the error."""
        status.status = "failed"
        status.error = error
        warnings.warn(
            f"flow-engine plugin '{status.name}' ({status.module}) failed to load: {error}; "
            f"`flow plugins` lists it, FLOW_ENGINE_DISABLE_PLUGINS={status.name} silences this",
            RuntimeWarning,
            stacklevel=3,
        )

    def register(self, plugin: Any, name: str | None = None) -> str:
        """Register a plugin object in code (tests, apps embedding the engine)."""
        with self._lock:
            if name is not None and self.pm.has_plugin(name):
                raise ConfigurationError(f"plugin '{name}' is already registered")
            registered = self.pm.register(plugin, name=name)
            if registered is None:
                raise ConfigurationError(f"plugin '{name}' is blocked and cannot be registered")
            self._forget_registries()
            self.statuses.append(
                PluginStatus(registered, getattr(plugin, "__name__", repr(plugin)), None, None, "loaded")
            )
            return registered

    def unregister(self, name: str) -> None:
        with self._lock:
            self.pm.unregister(name=name)
            self.statuses = [s for s in self.statuses if s.name != name or s.distribution is not None]
            self._forget_registries()

    def _forget_registries(self) -> None:
        """After a plugin came or went: what was collected from the hooks is asked for again."""
        self._step_types = self._backends = self._providers = self._executors = None
        self._step_hooks = None

    # -- registries -------------------------------------------------------------------------
    def _collect(self, hook_name: str, kind: str, key: Any) -> list[Any]:
        found: dict[Any, Any] = {}
        ordered: list[Any] = []
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            plugin_name = impl.plugin_name

            def register(info: Any, _plugin: str = plugin_name) -> None:
                info = replace(info, plugin=_plugin)
                k = key(info)
                if k in found and found[k].plugin != _plugin:
                    raise PluginConflictError(
                        f"{kind} '{k}' is registered by two plugins: '{found[k].plugin}' and '{_plugin}'; "
                        f"uninstall one or disable it with FLOW_ENGINE_DISABLE_PLUGINS"
                    )
                found[k] = info
                ordered.append(info)

            try:
                impl.function(register)
            except PluginConflictError:
                raise
            except Exception as exc:  # one plugin's broken hook must not take the registry down
                self._hook_failed(plugin_name, hook_name, exc)
        return ordered

    def _hook_failed(self, plugin_name: str, hook_name: str, exc: Exception) -> None:
        error = f"{hook_name} raised {type(exc).__name__}: {exc}"
        for status in self.statuses:
            if status.name == plugin_name and status.status == "loaded":
                self._fail(status, error)
                return
        log.warning("flow-engine plugin '%s': %s", plugin_name, error)

    def step_types(self) -> dict[str, StepTypeInfo]:
        known = self._step_types  # asked by every step: no lock once collected
        if known is not None:
            return known
        with self._lock:
            if self._step_types is None:
                infos = self._collect("register_step_types", "step type", lambda i: i.name)
                self._step_types = {i.name: i for i in infos}
            return self._step_types

    def storage_backends(self) -> list[StorageBackendInfo]:
        with self._lock:
            if self._backends is None:
                infos = self._collect("register_storage_backends", "storage backend", lambda i: i.name)
                self._check_scheme_conflicts(infos)
                self._backends = infos
            return self._backends

    @staticmethod
    def _check_scheme_conflicts(infos: list[StorageBackendInfo]) -> None:
        owners: dict[str, StorageBackendInfo] = {}
        for info in infos:
            for scheme in info.schemes:
                other = owners.get(scheme)
                if other is not None and other.plugin != info.plugin:
                    raise PluginConflictError(
                        f"URL scheme '{scheme}' is claimed by two plugins: "
                        f"'{other.plugin}' and '{info.plugin}'"
                    )
                owners[scheme] = info

    def model_providers(self) -> dict[str, ModelProviderInfo]:
        known = self._providers  # asked by every LLM call: no lock once collected
        if known is not None:
            return known
        with self._lock:
            if self._providers is None:
                infos = self._collect("register_model_providers", "model provider", lambda i: i.name)
                self._providers = {i.name: i for i in infos}
            return self._providers

    def news_sources(self) -> dict[str, NewsSourceInfo]:
        """News sources by name (``register_news_sources``); not cached: asked once per news step."""
        with self._lock:
            infos = self._collect("register_news_sources", "news source", lambda i: i.name)
            return {i.name: i for i in infos}

    def executors(self) -> dict[str, ExecutorInfo]:
        """Run executors by name (``register_executors``): where ``submit()`` sends a run."""
        with self._lock:
            if self._executors is None:
                infos = self._collect("register_executors", "executor", lambda i: i.name)
                self._executors = {i.name: i for i in infos}
            return self._executors

    def provides(self) -> dict[str, dict[str, list[str]]]:
        """Per plugin name: what it registers (step types, storage, model providers, executors, hooks)."""
        result: dict[str, dict[str, list[str]]] = {}

        def add(plugin: str, what: str, name: str) -> None:
            result.setdefault(plugin, {}).setdefault(what, []).append(name)

        for info in self.step_types().values():
            add(info.plugin, "step types", info.name)
        for backend in self.storage_backends():
            add(backend.plugin, "storage", f"{backend.name} ({', '.join(backend.schemes)})")
        for provider in self.model_providers().values():
            add(provider.plugin, "model providers", provider.name)
        for source in self.news_sources().values():
            note = f" (unavailable: {source.unavailable})" if source.unavailable else ""
            add(source.plugin, "news sources", source.name + note)
        for executor in self.executors().values():
            add(executor.plugin, "executors", executor.name)
        for plugin_name, plugin in self.pm.list_name_plugin():
            for caller in self.pm.get_hookcallers(plugin) or []:
                if caller.name not in _REGISTRY_HOOKS:
                    add(plugin_name, "hooks", caller.name)
        return result

    # -- lifecycle events -------------------------------------------------------------------
    def has_impls(self, hook_name: str) -> bool:
        return bool(getattr(self.pm.hook, hook_name).get_hookimpls())

    def step_hooks_listened(self) -> bool:
        """Does any plugin implement ``before_step``, ``after_step`` or ``on_step_error``? Asked by
        every step, so remembered until a plugin is registered or unregistered."""
        listened = self._step_hooks
        if listened is None:
            with self._lock:  # as register/unregister forget it: a stale answer is never kept
                listened = self._step_hooks
                if listened is None:
                    listened = self._step_hooks = any(
                        self.has_impls(hook) for hook in ("before_step", "after_step", "on_step_error")
                    )
        return listened

    async def fire(self, hook_name: str, **kwargs: Any) -> None:
        """Call a lifecycle hook and await every implementation that is ``async def``."""
        hook = getattr(self.pm.hook, hook_name)
        if not hook.get_hookimpls():
            return
        for result in hook(**kwargs):
            if inspect.isawaitable(result):
                await result
