"""Finding and rendering ``prompt_file`` templates (Jinja2, strict about undefined variables).

Search path, first hit wins: ``FLOW_ENGINE_PROMPTS_PATH`` folders, ``prompts/`` beside the module that
defines the step, ``./prompts``, then the built-in ``flow_engine/prompts``.
"""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import PromptError


def builtin_prompts_dir() -> Path:
    import flow_engine.builtin_prompts as builtin

    return Path(builtin.__file__).parent


def search_path(step_cls: type, prompts_path: str | None) -> list[Path]:
    dirs: list[Path] = []
    if prompts_path:
        dirs.extend(Path(p) for p in prompts_path.split(os.pathsep) if p)
    module = sys.modules.get(step_cls.__module__)
    module_file = getattr(module, "__file__", None)
    if module_file:
        dirs.append(Path(module_file).resolve().parent / "prompts")
    dirs.append(Path.cwd() / "prompts")
    dirs.append(builtin_prompts_dir())
    unique: list[Path] = []
    for d in dirs:
        if d not in unique:
            unique.append(d)
    return unique


def _check_relative(prompt_file: str) -> None:
    pure = PurePosixPath(prompt_file.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or (len(prompt_file) > 1 and prompt_file[1] == ":"):
        raise PromptError(f"prompt_file '{prompt_file}' must be a relative path inside a prompts folder")


def find_prompt(prompt_file: str, dirs: list[Path]) -> Path:
    _check_relative(prompt_file)
    for folder in dirs:
        candidate = folder / prompt_file
        if candidate.is_file():
            resolved, root = candidate.resolve(), folder.resolve()
            if not resolved.is_relative_to(root):
                raise PromptError(f"prompt_file '{prompt_file}' escapes its folder {folder}")
            return candidate
    searched = "\n".join(f"  - {d}" for d in dirs)
    raise PromptError(f"prompt file '{prompt_file}' not found; searched:\n{searched}")


@lru_cache(maxsize=256)
def _compile(path: str, mtime_ns: int) -> Any:
    import jinja2

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    return env.from_string(Path(path).read_text(encoding="utf-8"))


def render_prompt(step_cls: type, prompt_file: str, variables: dict[str, Any], prompts_path: str | None) -> str:
    dirs = search_path(step_cls, prompts_path)
    path = find_prompt(prompt_file, dirs)
    import jinja2

    template = _compile(str(path), path.stat().st_mtime_ns)
    try:
        return str(template.render(**variables))
    except jinja2.UndefinedError as exc:
        raise PromptError(
            f"prompt file '{prompt_file}' ({path}) uses an undefined variable: {exc.message}; "
            f"available: {', '.join(sorted(variables)) or 'none'}"
        ) from None
    except jinja2.TemplateError as exc:
        raise PromptError(f"prompt file '{prompt_file}' ({path}) is not a valid template: {exc}") from None
