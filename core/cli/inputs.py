"""The inputs of ``flow run``: ``--input KEY=VALUE`` pairs and ``--inputs-file``, read and checked.

A misspelt input name is refused (with a close match) instead of being dropped for its default; a
file that cannot be read or is not a JSON object is a usage error naming it.
"""

from __future__ import annotations

import inspect
import json
import os
import sys
import types
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flow_engine.errors import InputValidationError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    from flow_engine.flows import BaseFlow


class Stdin:
    """stdin may feed one thing only (``--inputs-file -`` or one ``KEY=@-``)."""

    def __init__(self) -> None:
        self.used_by: str | None = None

    def read(self, who: str) -> str:
        if self.used_by is not None:
            raise UsageError(f"{who} wants to read stdin, but {self.used_by} already reads it")
        self.used_by = who
        return sys.stdin.read()


def read_text(name: str, who: str, stdin: Stdin) -> str:
    if name == "-":
        return stdin.read(who)
    if not name:
        raise UsageError(f"{who}: no file name after '@'")
    path = Path(name).expanduser()
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{who}: no such file '{name}'") from None
    except IsADirectoryError:
        raise UsageError(f"{who}: '{name}' is a folder, not a file") from None
    except UnicodeDecodeError:
        raise UsageError(f"{who}: '{name}' is not UTF-8 text") from None
    except OSError as exc:
        raise UsageError(f"{who}: cannot read '{name}': {exc.strerror or exc}") from None


def read_inputs_file(name: str, stdin: Stdin) -> dict[str, Any]:
    who = f"--inputs-file {name}"
    text = read_text(name, who, stdin)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        source = "stdin" if name == "-" else f"'{name}'"
        where = f"line {exc.lineno}, column {exc.colno}"
        raise UsageError(f"{who}: {source} is not valid JSON: {exc.msg} ({where})") from None
    except RecursionError:  # nesting deeper than Python's JSON reader goes: not inputs a run can store
        raise InputValidationError(who, [{"loc": (), "msg": "nested too deeply"}]) from None
    if not isinstance(data, dict):
        raise UsageError(f"{who}: expected a JSON object of inputs, got {type(data).__name__}")
    return data


def _wants_text(annotation: Any) -> bool:
    """True when the field takes the text as it is (``str``, ``str | None``, str enums, paths)."""
    if annotation is str:
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _wants_text(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        return bool(members) and all(_wants_text(a) for a in members)
    if origin is typing.Literal:
        return all(isinstance(a, str) for a in typing.get_args(annotation))
    return inspect.isclass(annotation) and issubclass(annotation, str | os.PathLike)


def _field_annotations(flow_cls: type[BaseFlow]) -> dict[str, Any] | None:
    """Input name (and alias) -> annotation; None when the flow declares no ``Inputs``."""
    model = flow_cls.Inputs
    if model is None:
        return None
    names: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        names[name] = field.annotation
        if field.alias:
            names[field.alias] = field.annotation
    return names


def _coerce(value: str, annotation: Any, known: bool) -> Any:
    """Text for text fields; for any other field, the JSON value when the text parses as JSON."""
    if not known or _wants_text(annotation):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def collect_inputs(
    flow_cls: type[BaseFlow], pairs: tuple[str, ...], inputs_file: str | None, stdin: Stdin
) -> dict[str, Any]:
    """The JSON file's inputs, overridden by ``--input`` pairs; unknown names are refused."""
    data: dict[str, Any] = read_inputs_file(inputs_file, stdin) if inputs_file else {}
    annotations = _field_annotations(flow_cls)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--input '{pair}': expected KEY=VALUE (or KEY=@FILE to read a file)")
        if value.startswith("@@"):  # a literal value starting with '@'
            value = value[1:]
        elif value.startswith("@"):
            value = read_text(value[1:], f"--input {key}", stdin)
        known = annotations is not None and key in annotations
        data[key] = _coerce(value, annotations.get(key) if annotations else None, known)
    _refuse_unknown(flow_cls, data, annotations)
    return data


def _refuse_unknown(
    flow_cls: type[BaseFlow], data: dict[str, Any], annotations: dict[str, Any] | None
) -> None:
    """A misspelt input name would otherwise be dropped silently and its default used."""
    import difflib

    if annotations is None or flow_cls.Inputs is None or flow_cls.Inputs.model_config.get("extra") == "allow":
        return
    unknown = [key for key in data if key not in annotations]
    if not unknown:
        return
    lines = [f"flow '{flow_cls.flow_name}' has no input named {', '.join(repr(k) for k in unknown)}."]
    for key in unknown:
        close = difflib.get_close_matches(key, list(annotations), n=1)
        if close:
            lines.append(f"Did you mean '{close[0]}' instead of '{key}'?")
    lines.append(f"Its inputs: {', '.join(flow_cls.Inputs.model_fields) or 'none'}.")
    raise UsageError("\n".join(lines))
