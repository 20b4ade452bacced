"""Old import paths of the plugin API that keep working for one release, with a ``DeprecationWarning``.

Names moved to ``flow_engine.plugin`` (or to the plugin that owns them) still resolve from their old
module. Only code outside ``flow_engine`` is warned: the engine itself still uses some of these modules
internally, and a plugin author can do nothing about that. The modules are watched from the moment
they are imported (a meta-path finder installed by ``import flow_engine``), so their own code and the
engine pay nothing beyond one attribute lookup per ``from ... import``.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from typing import Any

PLUGIN_API = "flow_engine.plugin"

# old module -> {name: new module}; the names a plugin written against 0.1 imported from there
DEPRECATED: dict[str, dict[str, str]] = {
    "flow_engine.hookspecs": {"hookimpl": PLUGIN_API},
    "flow_engine.plugin_types": {
        "StepTypeInfo": PLUGIN_API,
        "ModelProviderInfo": PLUGIN_API,
        "ExecutorInfo": PLUGIN_API,
    },
    "flow_engine.llm_step": {"LLMStep": PLUGIN_API},
    "flow_engine.llm": {"complete": PLUGIN_API, "generate_image": PLUGIN_API},
    "flow_engine.steps": {"StepOutput": PLUGIN_API},
    "flow_engine.storage": {
        name: PLUGIN_API
        for name in (
            "RunStore",
            "RunRecord",
            "StepRecord",
            "LLMRequestRecord",
            "StorageBackendInfo",
            "RunStatus",
        )
    },
}


def _caller(old_module: str) -> tuple[bool, int]:
    """Whether the code reading the name is outside flow_engine, and the ``stacklevel`` (for
    ``warnings.warn`` called in ``warn_moved``) that points at it: this module's frames, the old
    module's ``__getattr__`` and the import machinery are skipped."""
    frame = sys._getframe(2)  # the caller of warn_moved
    level = 2
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module != __name__ and module != old_module and not module.startswith("importlib"):
            break
        if frame.f_code.co_name == "_handle_fromlist":
            # ``from package import name`` checks the name here, then reads it: warned at the read only
            return False, level
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    module = frame.f_globals.get("__name__", "") if frame is not None else ""
    # pluggy reads every name of a hookspec module while adding its specs: not a plugin's import
    inside = module.split(".", 1)[0] in ("flow_engine", "pluggy")
    return not inside, level


def warn_moved(old_module: str, name: str, new_module: str) -> None:
    outside, level = _caller(old_module)
    if outside:
        warnings.warn(
            f"importing {name} from {old_module} is deprecated and stops working in the next release; "
            f"use `from {new_module} import {name}`",
            DeprecationWarning,
            stacklevel=level,
        )


def moved(old_module: str, name: str, new_module: str) -> Any:
    """A name that left ``old_module`` (``module.__getattr__``): its new home's value, warning the caller."""
    warn_moved(old_module, name, new_module)
    return getattr(importlib.import_module(new_module), name)


class _WatchedModule(types.ModuleType):
    """A module whose deprecated names warn when read from outside flow_engine."""

    def __getattribute__(self, name: str) -> Any:
        if not name.startswith("__"):
            moves = DEPRECATED.get(types.ModuleType.__getattribute__(self, "__name__"), {})
            new_module = moves.get(name)
            if new_module is not None:
                warn_moved(types.ModuleType.__getattribute__(self, "__name__"), name, new_module)
        return types.ModuleType.__getattribute__(self, name)


def watch(module: types.ModuleType) -> None:
    if type(module) is types.ModuleType:
        module.__class__ = _WatchedModule


class _Loader(importlib.abc.Loader):
    def __init__(self, loader: Any):
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self._loader.create_module(spec)  # type: ignore[no-any-return]

    def exec_module(self, module: types.ModuleType) -> None:
        watch(module)  # before its code runs: a cycle may read it half-loaded
        self._loader.exec_module(module)


class _Finder(importlib.abc.MetaPathFinder):
    """Finds the deprecated modules through the other finders and has them watched once loaded."""

    def find_spec(
        self, fullname: str, path: Any, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in DEPRECATED:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _Loader(spec.loader)
                return spec
        return None


def install() -> None:
    """Called by ``import flow_engine``; modules already imported are watched at once."""
    if not any(isinstance(finder, _Finder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
    for name in DEPRECATED:
        module = sys.modules.get(name)
        if module is not None:
            watch(module)
