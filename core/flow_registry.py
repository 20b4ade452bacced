"""Finding flows: registered names (entry points), ``module:Class`` and ``path/to/file.py:Class``.

Flows are registered with the entry-point group ``flow_engine.flows`` (``name = "module:Class"``).
Nothing is imported until a flow is asked for by name, so one broken flow package costs nothing to
the others; ``load_all()`` (``flow list``) imports every one and reports the failures instead of
raising. Every way a target can be wrong ends in a ``UsageError`` that says what to type instead.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import inspect
import sys
import traceback
import types
import typing
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

from .errors import UsageError
from .flows import BaseFlow

ENTRY_POINT_GROUP = "flow_engine.flows"
# modules imported from a file path live under this prefix in sys.modules (a file is imported once)
FILE_MODULE_PREFIX = "flow_engine_user_flows"


@dataclass
class FlowEntry:
    """One registered flow: its name and entry point, and once loaded its class or the import error."""

    name: str
    target: str
    distribution: str | None
    version: str | None
    flow_class: type[BaseFlow] | None = None
    error: str | None = None


@dataclass
class InputInfo:
    """One field of a flow's ``Inputs`` model, as ``flow list`` shows it."""

    name: str
    type: str
    required: bool
    default: Any = None
    description: str | None = None


# -- registered flows ---------------------------------------------------------------------------
def _entry_points() -> dict[str, list[EntryPoint]]:
    found: dict[str, list[EntryPoint]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, []).append(ep)
    return found


def registered_names() -> list[str]:
    """Names of the registered flows (nothing imported)."""
    return sorted(_entry_points())


def _dist(ep: EntryPoint) -> tuple[str | None, str | None]:
    dist = getattr(ep, "dist", None)
    return (dist.name, dist.version) if dist is not None else (None, None)


def _conflict(name: str, eps: list[EntryPoint]) -> UsageError:
    owners = " and ".join(f"'{_dist(ep)[0] or '?'}' ({ep.value})" for ep in eps)
    return UsageError(f"flow name '{name}' is registered by two distributions: {owners}; uninstall one")


def _describe_import_error(exc: BaseException) -> str:
    """``Type: message (file, line N)``: the user's broken line, never the engine's own frame that
    imported their code (a SyntaxError carries its own file and line; other errors take the innermost
    frame outside importlib and this module)."""
    if isinstance(exc, SyntaxError):
        text = f"{type(exc).__name__}: {exc.msg}"
        if exc.filename:
            text += f" ({exc.filename}, line {exc.lineno})"
        if exc.text and exc.text.strip():
            text += f": {exc.text.strip()}"
        return text
    text = f"{type(exc).__name__}: {exc}".rstrip(": ")
    frames = traceback.extract_tb(exc.__traceback__)
    user_frames = [
        f
        for f in frames
        if "importlib" not in f.filename and "<frozen" not in f.filename and f.filename != __file__
    ]
    if user_frames:
        last = user_frames[-1]
        text += f" ({last.filename}, line {last.lineno})"
    return text


def _load_entry(ep: EntryPoint) -> type[BaseFlow]:
    try:
        obj = ep.load()
    except Exception as exc:
        detail = _describe_import_error(exc)
        raise UsageError(f"flow '{ep.name}' ({ep.value}) failed to import: {detail}") from exc
    return _check_flow_class(obj, f"flow '{ep.name}' ({ep.value})")


def load_registered(name: str) -> type[BaseFlow]:
    """Import one registered flow by name; an unknown name lists the registered ones."""
    eps = _entry_points()
    if name not in eps:
        raise unknown_flow_error(name, sorted(eps))
    if len(eps[name]) > 1:
        raise _conflict(name, eps[name])
    return _load_entry(eps[name][0])


def unknown_flow_error(name: str, known: list[str]) -> UsageError:
    lines = [f"no flow named '{name}'."]
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        lines[0] += f" Did you mean '{close[0]}'?"
    lines.append(f"Registered flows: {', '.join(known)}" if known else "No flows are registered.")
    lines.append("Or name one as module:Class or path/to/file.py:Class; see `flow list`.")
    return UsageError("\n".join(lines))


def load_all() -> list[FlowEntry]:
    """Every registered flow, imported; failures are reported on the entry, never raised."""
    result: list[FlowEntry] = []
    for name, eps in sorted(_entry_points().items()):
        dist, version = _dist(eps[0])
        entry = FlowEntry(name, eps[0].value, dist, version)
        result.append(entry)
        if len(eps) > 1:
            entry.error = str(_conflict(name, eps))
            continue
        try:
            obj = eps[0].load()
        except Exception as exc:
            entry.error = f"failed to import: {_describe_import_error(exc)}"
            continue
        try:
            entry.flow_class = _check_flow_class(obj, f"'{eps[0].value}'")
        except UsageError as exc:
            entry.error = str(exc)
    return result


# -- targets of `flow run` ----------------------------------------------------------------------
def resolve_flow(target: str) -> type[BaseFlow]:
    """A registered NAME, ``module:Class``, ``path/to/file.py:Class`` or ``path/to/file.py``.

    A registered name wins over the other readings. A file without ``:Class`` is accepted when it
    defines exactly one flow.
    """
    target = target.strip()
    if not target:
        raise UsageError("no flow given; name a registered flow (`flow list`), module:Class or file.py:Class")
    eps = _entry_points()
    if target in eps:
        return load_registered(target)
    source, sep, attr = target.rpartition(":")
    if not sep or _is_drive_only(source):  # "name" or "C:\\flows\\x.py"
        source, attr = target, ""
    if _looks_like_path(source):
        module = _import_file(Path(source))
        return _pick_class(module, attr, target, where=f"'{source}'")
    if not attr:
        raise unknown_flow_error(target, sorted(eps))
    module = _import_module(source, target)
    return _pick_class(module, attr, target, where=f"module '{source}'")


def _is_drive_only(text: str) -> bool:
    return len(text) == 1 and text.isalpha()


def _looks_like_path(text: str) -> bool:
    return text.endswith(".py") or "/" in text or "\\" in text


def _import_module(name: str, target: str) -> types.ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            raise UsageError(
                f"cannot import module '{name}' (from '{target}'): no such module on the Python path; "
                "for a file, give its path: path/to/file.py:Class"
            ) from None
        raise UsageError(f"module '{name}' failed to import: {_describe_import_error(exc)}") from exc
    except Exception as exc:
        raise UsageError(f"module '{name}' failed to import: {_describe_import_error(exc)}") from exc


def _import_file(path: Path) -> types.ModuleType:
    """Import a ``.py`` file by path, once per resolved path, with its folder importable for its siblings."""
    if not path.is_file():
        what = "a folder, not a file" if path.is_dir() else "no such file"
        raise UsageError(f"cannot load flow from '{path}': {what}")
    resolved = path.resolve()
    digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:10]
    module_name = f"{FILE_MODULE_PREFIX}.{_identifier(resolved.stem)}_{digest}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    if FILE_MODULE_PREFIX not in sys.modules:
        sys.modules[FILE_MODULE_PREFIX] = types.ModuleType(FILE_MODULE_PREFIX)
    spec = importlib.util.spec_from_file_location(module_name, resolved)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot load flow from '{path}': not a Python file")
    module = importlib.util.module_from_spec(spec)
    folder = str(resolved.parent)
    if folder not in sys.path:  # siblings importable (`from helpers import x`), as with `python file.py`
        sys.path.insert(0, folder)
    sys.modules[module_name] = module  # before exec: pydantic and dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        sys.modules.pop(module_name, None)
        if not isinstance(exc, Exception):
            raise
        raise UsageError(f"'{path}' failed to import: {_describe_import_error(exc)}") from exc
    return module


def _identifier(text: str) -> str:
    cleaned = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in text)
    return cleaned if cleaned and not cleaned[0].isdigit() else f"_{cleaned}"


def _flows_defined_in(module: types.ModuleType) -> list[str]:
    return sorted(
        name
        for name, obj in vars(module).items()
        if inspect.isclass(obj)
        and issubclass(obj, BaseFlow)
        and obj is not BaseFlow
        and obj.__module__ == module.__name__
    )


def _pick_class(module: types.ModuleType, attr: str, target: str, *, where: str) -> type[BaseFlow]:
    defined = _flows_defined_in(module)
    found = f"flows defined there: {', '.join(defined)}" if defined else "it defines no BaseFlow subclass"
    if not attr:
        if len(defined) != 1:
            raise UsageError(f"name the flow class: {target}:Class; {found}")
        attr = defined[0]
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UsageError(f"{where} has no attribute '{attr}'; {found}")
        obj = getattr(obj, part)
    return _check_flow_class(obj, f"'{target}'")


def _check_flow_class(obj: Any, label: str) -> type[BaseFlow]:
    if inspect.isclass(obj) and issubclass(obj, BaseFlow) and obj is not BaseFlow:
        return obj
    if inspect.isclass(obj):
        kind = "BaseFlow itself" if obj is BaseFlow else f"class {obj.__name__}"
    elif callable(obj):
        kind = f"{type(obj).__name__} {getattr(obj, '__name__', '')}".strip()
    else:
        kind = f"a {type(obj).__name__}"
    raise UsageError(
        f"{label} is {kind}, not a flow: a flow is a subclass of flow_engine.BaseFlow "
        "implementing async _execute_flow_logic(self, inputs)"
    )


# -- describing a flow --------------------------------------------------------------------------
def flow_description(cls: type[BaseFlow]) -> str:
    """The class's ``description`` attribute, else its own docstring (not one inherited from BaseFlow)."""
    if cls.description:
        return inspect.cleandoc(cls.description)
    for klass in cls.__mro__:
        if klass is BaseFlow or klass is object:
            break
        if klass.__dict__.get("__doc__"):
            return inspect.cleandoc(klass.__doc__ or "")
    return ""


def type_name(annotation: Any) -> str:
    """A short readable type: ``str``, ``list[str]``, ``int | None``, ``Literal['a', 'b']``."""
    if annotation is None or annotation is type(None):
        return "None"
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return f"Literal[{', '.join(repr(a) for a in typing.get_args(annotation))}]"
    if origin is typing.Annotated:
        return type_name(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in typing.get_args(annotation))
    if origin is not None:
        args = typing.get_args(annotation)
        base = getattr(origin, "__name__", str(origin))
        return f"{base}[{', '.join(type_name(a) for a in args)}]" if args else base
    if inspect.isclass(annotation):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def describe_inputs(cls: type[BaseFlow]) -> list[InputInfo]:
    """The fields of ``cls.Inputs`` (empty when the flow declares none)."""
    from pydantic_core import PydanticUndefined

    from .jsonable import to_jsonable

    model = cls.Inputs
    if model is None:
        return []
    infos = []
    for name, field in model.model_fields.items():
        required = field.is_required()
        default: Any = None
        if not required:
            if field.default_factory is not None:
                try:
                    default = to_jsonable(field.default_factory())  # type: ignore[call-arg]
                except Exception:
                    default = f"<{getattr(field.default_factory, '__name__', 'factory')}()>"
            elif field.default is not PydanticUndefined:
                default = to_jsonable(field.default)
        infos.append(
            InputInfo(
                name=field.alias or name,
                type=type_name(field.annotation),
                required=required,
                default=default,
                description=field.description,
            )
        )
    return infos
