"""prompt_file templates: the search path, clear errors, no escaping the prompts folder."""

from __future__ import annotations

import importlib
import os
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from flow_engine import UnstructuredStep, configure
from flow_engine.errors import PromptError, UsageError
from flow_engine.prompts import builtin_prompts_dir, render_prompt, search_path

pytestmark = pytest.mark.usefixtures("no_network")  # 127.0.0.1 only


def make_step_module(root: Path, body: str = "") -> Any:
    """A module in its own folder (with a prompts/ beside it) defining ``Step``; returns the module."""
    name = f"stepmod_{uuid.uuid4().hex[:8]}"
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text("")
    (folder / "steps.py").write_text(
        textwrap.dedent(
            """
            from pydantic import BaseModel
            from flow_engine import UnstructuredStep

            class Step(UnstructuredStep):
                prompt_file = "p.md"

                class Inputs(BaseModel):
                    name: str = "Ada"
            """
        )
        + textwrap.dedent(body)
    )
    sys.path.insert(0, str(root))
    try:
        return importlib.import_module(f"{name}.steps")
    finally:
        sys.path.remove(str(root))


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def render(step_cls: type, variables: dict[str, Any] | None = None, prompt_file: str | None = None) -> str:
    from flow_engine.engine import get_engine

    return render_prompt(
        step_cls,
        prompt_file or step_cls.prompt_file,
        {"name": "Ada"} if variables is None else variables,
        get_engine().settings.prompts_path,
    )


def test_search_path_order_first_hit_wins(tmp_path, monkeypatch):
    module = make_step_module(tmp_path / "code")
    module_prompts = Path(module.__file__).parent / "prompts"
    env_a, env_b = tmp_path / "env_a", tmp_path / "env_b"
    monkeypatch.setenv("FLOW_ENGINE_PROMPTS_PATH", f"{env_a}{os.pathsep}{env_b}")
    configure(database_url="memory://", data_dir=tmp_path / "data")
    cwd_prompts = Path.cwd() / "prompts"  # the test runs in tmp_path
    assert search_path(module.Step, str(env_a) + os.pathsep + str(env_b)) == [
        env_a,
        env_b,
        module_prompts,
        cwd_prompts,
    ]
    files = [
        write(env_a / "p.md", "env_a {{ name }}"),
        write(env_b / "p.md", "env_b {{ name }}"),
        write(module_prompts / "p.md", "module {{ name }}"),
        write(cwd_prompts / "p.md", "cwd {{ name }}"),
    ]
    for expected, file in zip(["env_a", "env_b", "module", "cwd"], files, strict=True):
        assert render(module.Step) == f"{expected} Ada"
        file.unlink()


def test_a_user_step_never_finds_the_example_flows_templates(tmp_path, monkeypatch):
    """A misplaced `summarize.md` is an error, not the built-in example's template used in silence."""
    module = make_step_module(tmp_path / "code")
    configure(database_url="memory://", data_dir=tmp_path / "data")
    assert builtin_prompts_dir() not in search_path(module.Step, None)
    for name in ("extract_content.md", "summarize.md"):
        assert (builtin_prompts_dir() / name).is_file()
        with pytest.raises(PromptError) as info:
            render(module.Step, {"article_text": "A", "max_length": 1, "content": "c", "style": "s"}, name)
        assert f"prompt file '{name}' not found" in str(info.value)
        assert "example flows have a template of that name" in str(info.value)


def test_the_example_flows_steps_and_their_subclasses_find_their_templates(tmp_path):
    from flow_engine.examples.article_processing import ExtractContentStep

    configure(database_url="memory://", data_dir=tmp_path / "data")
    write(tmp_path / "prompts" / "extract_content.md", "a user's own {{ article_text }}")  # ./prompts

    class Mine(ExtractContentStep):
        pass

    for step in (ExtractContentStep, Mine):
        text = render(step, {"article_text": "ARTICLE", "max_length": 10}, "extract_content.md")
        assert "ARTICLE" in text and "10 characters" in text and "a user's own" not in text


def test_a_missing_template_names_the_file_and_the_search_path(tmp_path, monkeypatch):
    module = make_step_module(tmp_path / "code")
    monkeypatch.setenv("FLOW_ENGINE_PROMPTS_PATH", str(tmp_path / "mine"))
    configure(database_url="memory://", data_dir=tmp_path / "data")
    with pytest.raises(PromptError) as info:
        render(module.Step)
    message = str(info.value)
    assert "prompt file 'p.md' not found" in message
    for folder in search_path(module.Step, str(tmp_path / "mine")):
        assert str(folder) in message
    assert "FLOW_ENGINE_PROMPTS_PATH" in message
    assert isinstance(info.value, UsageError)  # the CLI reports it with exit code 2


def test_a_missing_variable_names_the_variable_the_file_and_the_search_path(tmp_path, monkeypatch):
    write(tmp_path / "prompts" / "p.md", "Hello {{ name }}, you are {{ age }}.")
    module = make_step_module(tmp_path / "code")
    monkeypatch.setenv("FLOW_ENGINE_PROMPTS_PATH", str(tmp_path / "mine"))
    configure(database_url="memory://", data_dir=tmp_path / "data")
    with pytest.raises(PromptError) as info:
        render(module.Step)
    message = str(info.value)
    assert "'age' is undefined" in message
    assert "p.md" in message and str(tmp_path / "prompts" / "p.md") in message
    assert "the step's inputs are: name" in message
    folders = search_path(module.Step, str(tmp_path / "mine"))
    assert len(folders) == 3  # FLOW_ENGINE_PROMPTS_PATH, beside the module, ./prompts
    for folder in folders:
        assert f"  - {folder}" in message
    assert f"  - {tmp_path / 'mine'} (does not exist)" in message


@pytest.mark.parametrize(
    "bad", ["../secret.md", "sub/../../secret.md", "/etc/passwd", "..\\secret.md", "C:/x.md"]
)
def test_escaping_the_prompts_folder_is_refused(tmp_path, bad):
    write(tmp_path / "secret.md", "secret")
    write(tmp_path / "prompts" / "sub" / "ok.md", "fine")
    module = make_step_module(tmp_path / "code")
    with pytest.raises(PromptError, match="refused"):
        render(module.Step, prompt_file=bad)


def test_a_symlink_out_of_the_folder_is_refused(tmp_path):
    write(tmp_path / "outside" / "secret.md", "secret {{ name }}")
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "link.md").symlink_to(tmp_path / "outside" / "secret.md")
    module = make_step_module(tmp_path / "code")
    with pytest.raises(PromptError, match="leads out of its folder"):
        render(module.Step, prompt_file="link.md")


def test_subfolders_and_includes_work(tmp_path):
    write(tmp_path / "prompts" / "parts" / "header.md", "HEADER for {{ name }}")
    write(tmp_path / "prompts" / "sub" / "p.md", '{% include "parts/header.md" %}\nbody')
    module = make_step_module(tmp_path / "code")
    assert render(module.Step, prompt_file="sub/p.md") == "HEADER for Ada\nbody"
    write(tmp_path / "prompts" / "bad_include.md", '{% include "parts/missing.md" %}')
    with pytest.raises(PromptError, match=r"includes 'parts/missing\.md'"):
        render(module.Step, prompt_file="bad_include.md")


def test_a_broken_template_is_a_clear_error(tmp_path):
    write(tmp_path / "prompts" / "p.md", "Hello {{ name ")
    module = make_step_module(tmp_path / "code")
    with pytest.raises(PromptError, match=r"p.md.*not a valid template: line 1"):
        render(module.Step)


def test_an_edited_template_is_read_again(tmp_path):
    path = write(tmp_path / "prompts" / "p.md", "one {{ name }}")
    module = make_step_module(tmp_path / "code")
    assert render(module.Step) == "one Ada"
    path.write_text("two {{ name }}")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10_000_000))
    assert render(module.Step) == "two Ada"


def test_a_subclass_finds_the_templates_beside_its_base(tmp_path):
    base = make_step_module(tmp_path / "base")
    write(Path(base.__file__).parent / "prompts" / "p.md", "base template {{ name }}")
    sub = make_step_module(
        tmp_path / "sub", body=f"\nfrom {base.__name__} import Step as Base\n\nclass Sub(Base):\n    pass\n"
    )
    assert search_path(sub.Sub, None).index(Path(base.__file__).parent / "prompts") == 1
    assert render(sub.Sub) == "base template Ada"


async def test_a_step_renders_its_prompt_file_with_its_validated_inputs(tmp_path):
    module = make_step_module(tmp_path / "code")
    write(Path(module.__file__).parent / "prompts" / "p.md", "Write about {{ name }}")
    result = await module.Step().execute({}, model="offline")
    assert result.output_content == "[offline:default] Write about Ada"


async def test_a_step_without_prompt_file_uses_its_prompt_input(engine):
    class CreateThumbnailLike(UnstructuredStep):
        class Inputs(BaseModel):
            prompt: str
            size: str = "1024x1024"

    step = CreateThumbnailLike()
    assert step.render(CreateThumbnailLike.Inputs(prompt="a red fox")) == "a red fox"
    result = await step.execute({"prompt": "a red fox"}, model="offline")
    assert "a red fox" in result.output_content
