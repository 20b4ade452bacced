"""Finding and rendering ``prompt_file`` templates (Jinja2, strict about undefined variables).

Search path, first hit wins:

1. the folders in ``FLOW_ENGINE_PROMPTS_PATH`` (``os.pathsep``-separated), in order;
2. ``prompts/`` beside the module that defines the step (then beside the modules of the step classes
   it inherits from, so a subclass finds its base's templates);
3. ``./prompts`` (the current working directory's).

The templates of flow-engine's own example flows (``prompts/`` in the source tree, package
``flow_engine.builtin_prompts``) are the "beside the module" folder of the steps defined in
``flow_engine.examples`` (and of their subclasses) only: a user's step
never finds them, so a misplaced ``summarize.md`` is an error naming the search path, not the example's
template used in silence.

A ``prompt_file`` is a relative path inside one of those folders (``summaries/short.md`` is fine);
absolute paths and ``..`` are refused, and so is a symlink that leads out of its folder. Templates may
``{% include %}`` other templates found on the same search path.
"""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import PromptError


def builtin_prompts_dir() -> Path:
    """The templates shipped with flow-engine: ``prompts/``, the package ``flow_engine.builtin_prompts``."""
    import flow_engine.builtin_prompts as builtin

    return Path(builtin.__file__).parent


_BUILTIN_OWNERS = ("flow_engine.examples.",)


def _module_dirs(step_cls: type) -> list[Path]:
    dirs: list[Path] = []
    for cls in step_cls.__mro__:
        module_name = getattr(cls, "__module__", "") or ""
        if module_name.startswith(_BUILTIN_OWNERS):
            dirs.append(builtin_prompts_dir())  # a built-in example step's own templates
            continue
        if cls is not step_cls and (cls is object or module_name.split(".")[0] == "flow_engine"):
            continue  # the step types' base classes have no templates
        module = sys.modules.get(module_name)
        module_file = getattr(module, "__file__", None)
        if module_file:
            dirs.append(Path(module_file).resolve().parent / "prompts")
    return dirs


def search_path(step_cls: type, prompts_path: str | None) -> list[Path]:
    """The folders searched for ``step_cls``'s ``prompt_file``, first hit wins."""
    dirs: list[Path] = []
    if prompts_path:
        dirs.extend(Path(p).expanduser() for p in prompts_path.split(os.pathsep) if p.strip())
    dirs.extend(_module_dirs(step_cls))
    dirs.append(Path.cwd() / "prompts")
    unique: list[Path] = []
    for d in dirs:
        if d not in unique:
            unique.append(d)
    return unique


def _describe(dirs: list[Path]) -> str:
    return "\n".join(f"  - {d}{'' if d.is_dir() else ' (does not exist)'}" for d in dirs)


def _check_relative(prompt_file: str) -> None:
    pure = PurePosixPath(prompt_file.replace("\\", "/"))
    if (
        not prompt_file.strip()
        or pure.is_absolute()
        or ".." in pure.parts
        or (len(prompt_file) > 1 and prompt_file[1] == ":")
    ):
        raise PromptError(
            f"prompt_file '{prompt_file}' is refused: it must be a relative path inside a prompts folder "
            "(no absolute paths, no '..')"
        )


def find_prompt(prompt_file: str, dirs: list[Path]) -> tuple[Path, Path]:
    """The template's path and the search folder it was found in."""
    _check_relative(prompt_file)
    for folder in dirs:
        candidate = folder / prompt_file
        if candidate.is_file():
            resolved, root = candidate.resolve(), folder.resolve()
            if not resolved.is_relative_to(root):
                raise PromptError(
                    f"prompt_file '{prompt_file}' is refused: it leads out of its folder {folder}"
                )
            return candidate, folder
    example = builtin_prompts_dir() / prompt_file
    hint = (
        f"\n(flow-engine's example flows have a template of that name, {example}, which your steps do "
        "not use: copy it into one of these folders)"
        if example.is_file()
        else ""
    )
    raise PromptError(
        f"prompt file '{prompt_file}' not found; searched (first hit wins; add folders with "
        f"FLOW_ENGINE_PROMPTS_PATH):\n{_describe(dirs)}{hint}"
    )


@lru_cache(maxsize=64)
def _environment(dirs: tuple[str, ...]) -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(list(dirs)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        auto_reload=True,
    )


def render_prompt(
    step_cls: type, prompt_file: str, variables: dict[str, Any], prompts_path: str | None
) -> str:
    """Render ``prompt_file`` for ``step_cls`` with ``variables``; every failure is a ``PromptError``."""
    import jinja2

    dirs = search_path(step_cls, prompts_path)
    path, folder = find_prompt(prompt_file, dirs)
    # the folder it was found in goes first, so the loader picks the same file and its includes
    env = _environment(tuple(str(d) for d in [folder, *dirs]))
    try:
        template = env.get_template(PurePosixPath(prompt_file.replace("\\", "/")).as_posix())
        return str(template.render(**variables))
    except jinja2.UndefinedError as exc:
        raise PromptError(
            f"prompt file '{prompt_file}' ({path}) uses an undefined variable: {exc.message}; "
            f"the step's inputs are: {', '.join(sorted(variables)) or 'none'}; prompt search path "
            f"(first hit wins):\n{_describe(dirs)}"
        ) from None
    except jinja2.TemplateNotFound as exc:
        raise PromptError(
            f"prompt file '{prompt_file}' ({path}) includes '{exc.name}', which is not on the search path:\n"
            f"{_describe(dirs)}"
        ) from None
    except jinja2.TemplateSyntaxError as exc:
        raise PromptError(
            f"prompt file '{prompt_file}' ({path}) is not a valid template: line {exc.lineno}: {exc.message}"
        ) from None
    except jinja2.TemplateError as exc:
        raise PromptError(f"prompt file '{prompt_file}' ({path}) could not be rendered: {exc}") from None
