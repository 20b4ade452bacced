"""Loading plugins and asking them what they provide.

Built-in plugins are listed in ``DEFAULT_PLUGINS`` and registered like any other (pytest's
``default_plugins``, llm's ``DEFAULT_PLUGINS``), so a stale install never loses them; third-party
plugins come from the ``flow_engine`` entry-point group. Loading is lazy (first use, never at
``import flow_engine``) and forgiving: a plugin that fails to import, or implements a hook nobody
specified (a misspelt ``after_steps``), is recorded as failed with its error, reported by
``flow plugins`` and a warning, and unregistered; the rest still load.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
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
from .plugin_types import ExecutorInfo, ModelProviderInfo, StepTypeInfo
from .version import __version__

if TYPE_CHECKING:  # pragma: no cover - storage pulls in pydantic; `flow --help` imports this module
    from pydantic_settings import BaseSettings

    from .storage import StorageBackendInfo

log = logging.getLogger("flow_engine.plugins")

ENTRY_POINT_GROUP = "flow_engine"
BUILTIN_DISTRIBUTION = "flow-engine"
# (name, module) of the built-in plugins: module names only, imported like a third party's
DEFAULT_PLUGINS: tuple[tuple[str, str], ...] = tuple(
    (name, f"flow_engine.plugins.{name}")
    for name in (
        "python_step",
        "unstructured",
        "structured",
        "image",
        "offline",
        "sql",
        "memory",
        "news",
        "local_executor",
        "celery",
        "otel",
        "ui",
    )
)
# hooks whose answers `flow plugins` shows as what a plugin provides, not as "hooks"
_REGISTRY_HOOKS = (
    "register_hookspecs",
    "register_settings",
    "register_step_types",
    "register_storage_backends",
    "register_model_providers",
    "register_executors",
)


def _defines(module: str, hook: str) -> bool:
    """Whether a module's source defines ``hook`` (read, not imported); True when it cannot be read."""
    try:
        spec = importlib.util.find_spec(module)
        origin = spec.origin if spec is not None else None
        if origin is None or not origin.endswith(".py"):
            return True
        with open(origin, encoding="utf-8") as source:
            return f"def {hook}(" in source.read()
    except (ImportError, OSError, ValueError, UnicodeDecodeError):
        return True


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

    def __init__(
        self,
        *,
        only: set[str] | None = None,
        disabled: set[str] | None = None,
        builtins: tuple[tuple[str, str], ...] | None = None,
        implementing: str | None = None,
    ):
        """``implementing``: load only plugins whose module defines that hook (``flow --help`` lists
        plugin commands this way without importing every plugin); such a registry is for that one hook."""
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.statuses: list[PluginStatus] = []
        self._only = only
        self._disabled = disabled or set()
        self._lock = threading.RLock()
        self._step_types: dict[str, StepTypeInfo] | None = None
        self.step_type_conflicts: dict[str, str] = {}  # step type -> why it is not registered
        self._backends: list[StorageBackendInfo] | None = None
        self._providers: dict[str, ModelProviderInfo] | None = None
        self._executors: dict[str, ExecutorInfo] | None = None
        self._settings: list[tuple[str, type[BaseSettings]]] | None = None
        self._step_hooks: bool | None = None
        self._implementing = implementing
        owners: dict[str, PluginStatus] = {}
        self._load_builtins(DEFAULT_PLUGINS if builtins is None else builtins, owners)
        self._load_entry_points(owners)
        if implementing is not None:
            return  # a partial registry: hooks of plugins not loaded are not checked
        for plugin_name, _plugin in list(self.pm.list_name_plugin()):
            self._add_hookspecs_of(plugin_name)
        self._drop_unknown_hooks()
        self.pm.check_pending()  # what is left implements only specified hooks

    # -- loading ----------------------------------------------------------------------------
    def _load_builtins(self, builtins: tuple[tuple[str, str], ...], owners: dict[str, PluginStatus]) -> None:
        for name, module in builtins:
            status = PluginStatus(name, module, BUILTIN_DISTRIBUTION, __version__, "loaded")
            self.statuses.append(status)
            owners[name] = status
            if name in self._disabled:
                status.status = "disabled"
                continue
            self._import_and_register(status, lambda module=module: importlib.import_module(module), module)

    def _load_entry_points(self, owners: dict[str, PluginStatus]) -> None:
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = ep.dist.name if ep.dist else None
            if dist == BUILTIN_DISTRIBUTION:  # an older install's metadata: built-ins come from code
                continue
            version = ep.dist.version if ep.dist else None
            status = PluginStatus(ep.name, ep.value, dist, version, "loaded")
            self.statuses.append(status)
            if ep.name in self._disabled:
                status.status = "disabled"
                continue
            if self._only is not None and ep.name not in self._only:
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
            self._import_and_register(status, ep.load, ep.module)

    def _import_and_register(self, status: PluginStatus, load: Any, module: str) -> None:
        if self._implementing is not None and not _defines(module, self._implementing):
            status.status = "not-selected"
            return
        try:
            plugin = load()
            self.pm.register(plugin, name=status.name)
        except Exception as exc:  # a broken plugin must not take the engine down
            self._fail(status, f"{type(exc).__name__}: {exc}")

    def _add_hookspecs_of(self, plugin_name: str) -> None:
        """Ask one plugin for the hooks it adds (``register_hookspecs``)."""
        plugin = self.pm.get_plugin(plugin_name)
        impls = [i for i in self.pm.hook.register_hookspecs.get_hookimpls() if i.plugin is plugin]
        for impl in impls:
            try:
                impl.function(register=self._add_hookspecs)
            except Exception as exc:
                self._unregister_failed(plugin_name, f"register_hookspecs raised {type(exc).__name__}: {exc}")

    def _add_hookspecs(self, module_or_class: Any) -> None:
        """pluggy's ``add_hookspecs``, after failing the plugins whose implementations of the new hooks
        take arguments the spec does not have (pluggy would raise half-way)."""
        for name in dir(module_or_class):
            spec = getattr(module_or_class, name, None)
            if self.pm.parse_hookspec_opts(module_or_class, name) is None or not callable(spec):
                continue
            allowed = set(inspect.signature(spec).parameters)
            caller = getattr(self.pm.hook, name, None)
            for impl in caller.get_hookimpls() if caller is not None else []:
                extra = set(impl.argnames) - allowed
                if extra:
                    self._unregister_failed(
                        impl.plugin_name,
                        f"hook {name} takes unknown arguments {sorted(extra)}; "
                        f"the spec has {sorted(allowed)}",
                    )
        self.pm.add_hookspecs(module_or_class)

    def _drop_unknown_hooks(self, only: str | None = None) -> list[str]:
        """Fail and unregister every plugin implementing a hook no spec defines; return the errors."""
        known = sorted(n for n, c in vars(self.pm.hook).items() if not n.startswith("_") and c.has_spec())
        errors = []
        for name, caller in list(vars(self.pm.hook).items()):
            if name.startswith("_") or caller.has_spec():
                continue
            for impl in caller.get_hookimpls():
                if impl.optionalhook or (only is not None and impl.plugin_name != only):
                    continue
                close = difflib.get_close_matches(name, known, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                error = f"implements the unknown hook '{name}'{hint}"
                errors.append(error)
                self._unregister_failed(impl.plugin_name, error)
        return errors

    def _unregister_failed(self, plugin_name: str, error: str) -> None:
        if self.pm.has_plugin(plugin_name):
            self.pm.unregister(name=plugin_name)
        for status in self.statuses:
            if status.name == plugin_name and status.status == "loaded":
                self._fail(status, error)
                return

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
        """Register a plugin object in code (tests, apps embedding the engine).

        A plugin implementing an unknown hook is refused with the hook's name."""
        with self._lock:
            if name is not None and self.pm.has_plugin(name):
                raise ConfigurationError(f"plugin '{name}' is already registered")
            registered = self.pm.register(plugin, name=name)
            if registered is None:
                raise ConfigurationError(f"plugin '{name}' is blocked and cannot be registered")
            status = PluginStatus(registered, getattr(plugin, "__name__", repr(plugin)), None, None, "loaded")
            self.statuses.append(status)
            self._add_hookspecs_of(registered)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # raised below instead
                errors = self._drop_unknown_hooks(only=registered)
            self._forget_registries()
            if errors or status.status == "failed":
                self.statuses.remove(status)
                raise ConfigurationError(f"plugin '{registered}' {'; '.join(errors) or status.error}")
            return registered

    def unregister(self, name: str) -> None:
        with self._lock:
            self.pm.unregister(name=name)
            self.statuses = [s for s in self.statuses if s.name != name or s.distribution is not None]
            self._forget_registries()

    def _forget_registries(self) -> None:
        """After a plugin came or went: what was collected from the hooks is asked for again."""
        self._step_types = self._backends = self._providers = self._executors = None
        self._settings = None
        self._step_hooks = None

    # -- registries -------------------------------------------------------------------------
    def _collect(
        self, hook_name: str, kind: str, key: Any, conflicts: dict[Any, str] | None = None
    ) -> list[Any]:
        """What the plugins register through ``hook_name``. Two plugins claiming one name raise
        ``PluginConflictError``, or, given ``conflicts``, are noted there and the name left out."""
        found: dict[Any, Any] = {}
        ordered: list[Any] = []
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            plugin_name = impl.plugin_name

            def register(info: Any, _plugin: str = plugin_name) -> None:
                info = replace(info, plugin=_plugin)
                k = key(info)
                if k in found and found[k].plugin != _plugin:
                    message = (
                        f"{kind} '{k}' is registered by two plugins: '{found[k].plugin}' and '{_plugin}'; "
                        f"uninstall one or disable it with FLOW_ENGINE_DISABLE_PLUGINS"
                    )
                    if conflicts is None:
                        raise PluginConflictError(message)
                    conflicts[k] = message
                    self._note_conflict((found[k].plugin, _plugin), message)
                found[k] = info
                ordered.append(info)

            try:
                impl.function(register)
            except PluginConflictError:
                raise
            except Exception as exc:  # one plugin's broken hook must not take the registry down
                self._hook_failed(plugin_name, hook_name, exc)
        if conflicts:
            ordered = [info for info in ordered if key(info) not in conflicts]
        return ordered

    def _note_conflict(self, plugins: tuple[str, str], message: str) -> None:
        """Both plugins stay loaded (their other parts work); ``flow plugins`` shows the conflict."""
        for status in self.statuses:
            if status.name in plugins and message not in (status.error or ""):
                status.error = f"{status.error}; {message}" if status.error else message
        warnings.warn(f"flow-engine: {message}", RuntimeWarning, stacklevel=4)

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
                # a step type two plugins claim is left out (a step using it fails naming both);
                # unrelated flows and `flow plugins` keep working
                conflicts: dict[str, str] = {}
                infos = self._collect("register_step_types", "step type", lambda i: i.name, conflicts)
                self.step_type_conflicts = conflicts
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

    def collect_named(self, hook_name: str, kind: str) -> dict[str, Any]:
        """The records of a ``register_*`` hook by their ``name`` (for hooks plugins add, such as the
        news plugin's ``register_news_sources``); asked again each time, not cached."""
        with self._lock:
            if not self.has_impls(hook_name):
                return {}
            infos = self._collect(hook_name, kind, lambda i: i.name)
            return {i.name: i for i in infos}

    def settings_classes(self) -> list[type[BaseSettings]]:
        """The plugins' settings classes (``register_settings``)."""
        return [cls for _plugin, cls in self.plugin_settings()]

    def plugin_settings(self) -> list[tuple[str, type[BaseSettings]]]:
        """(plugin name, settings class) per ``register_settings`` call. A setting name claimed twice,
        or one of the core settings, is one ``PluginConflictError`` naming both."""
        with self._lock:
            if self._settings is None:
                from .config import Settings

                owners: dict[str, str] = dict.fromkeys(Settings.model_fields, "flow-engine core")
                classes: list[tuple[str, type[BaseSettings]]] = []
                for impl in self.pm.hook.register_settings.get_hookimpls():

                    def register(cls: type[BaseSettings], _plugin: str = impl.plugin_name) -> None:
                        for setting in cls.model_fields:
                            other = owners.setdefault(setting, _plugin)
                            if other != _plugin:
                                raise PluginConflictError(
                                    f"setting '{setting}' is registered by two plugins: '{other}' and "
                                    f"'{_plugin}'; uninstall one or disable it with "
                                    "FLOW_ENGINE_DISABLE_PLUGINS"
                                )
                        classes.append((_plugin, cls))

                    try:
                        impl.function(register=register)
                    except PluginConflictError:
                        raise
                    except Exception as exc:  # one plugin's broken hook must not take the rest down
                        self._hook_failed(impl.plugin_name, "register_settings", exc)
                self._settings = classes
            return self._settings

    def executors(self) -> dict[str, ExecutorInfo]:
        """Run executors by name (``register_executors``): where ``submit()`` sends a run."""
        with self._lock:
            if self._executors is None:
                infos = self._collect("register_executors", "executor", lambda i: i.name)
                self._executors = {i.name: i for i in infos}
            return self._executors

    def default_executor(self) -> str | None:
        """The executor of ``submit()`` when FLOW_ENGINE_EXECUTOR names none: the one marked ``default``,
        else the first (by name) that runs in-process, else the first; None if there is none."""
        infos = sorted(self.executors().values(), key=lambda i: (not i.default, not i.in_process, i.name))
        return infos[0].name if infos else None

    def default_background_executor(self) -> str | None:
        """Where ``flow run --background`` sends a run when no executor is named: the executor marked
        ``background_default``, else the first (by name) that does not run in-process; None if none."""
        candidates = sorted((i for i in self.executors().values() if not i.in_process), key=lambda i: i.name)
        marked = [i for i in candidates if i.background_default]
        chosen = marked or candidates
        return chosen[0].name if chosen else None

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
        for executor in self.executors().values():
            add(executor.plugin, "executors", executor.name)
        for hook_name in self._added_registry_hooks():
            kind = hook_name.removeprefix("register_").replace("_", " ")
            for info in self.collect_named(hook_name, kind.rstrip("s")).values():
                unavailable = getattr(info, "unavailable", None)
                add(info.plugin, kind, info.name + (f" (unavailable: {unavailable})" if unavailable else ""))
        for plugin_name, cls in self.plugin_settings():
            for setting in cls.model_fields:
                add(plugin_name, "settings", f"FLOW_ENGINE_{setting.upper()}")
        for plugin_name, plugin in self.pm.list_name_plugin():
            for caller in self.pm.get_hookcallers(plugin) or []:
                if caller.name not in _REGISTRY_HOOKS and caller.name not in self._added_registry_hooks():
                    add(plugin_name, "hooks", caller.name)
        return result

    def _added_registry_hooks(self) -> list[str]:
        """``register_*`` hooks that plugins added (``register_hookspecs``), such as news sources."""
        core = set(vars(hookspecs))
        return sorted(
            name
            for name, caller in vars(self.pm.hook).items()
            if name.startswith("register_") and name not in core and caller.has_spec()
        )

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

    def call_each(self, hook_name: str, **kwargs: Any) -> None:
        """Call a synchronous hook's implementations one by one: one that raises marks its plugin
        failed (``flow plugins`` says why) and unregisters it (none of its hooks runs after a failed
        start), and the others are still called."""
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            try:
                impl.function(**{name: kwargs[name] for name in impl.argnames})
            except Exception as exc:
                error = f"{hook_name} raised {type(exc).__name__}: {exc}"
                with self._lock:
                    self._unregister_failed(impl.plugin_name, error)
                    self._forget_registries()

    async def fire(self, hook_name: str, **kwargs: Any) -> None:
        """Call a lifecycle hook and await every implementation that is ``async def``."""
        hook = getattr(self.pm.hook, hook_name)
        if not hook.get_hookimpls():
            return
        for result in hook(**kwargs):
            if inspect.isawaitable(result):
                await result
