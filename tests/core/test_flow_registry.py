"""Finding flows: registered names, ``module:Class``, ``file.py:Class``, and every way to get it wrong."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from flow_engine import BaseFlow
from flow_engine.errors import UsageError
from flow_engine.examples.article_processing import ArticleProcessingFlow
from flow_engine.flow_registry import (
    describe_inputs,
    flow_description,
    load_all,
    load_registered,
    registered_names,
    resolve_flow,
    type_name,
)
from tests.cli.conftest import Distributions

FLOWS = """
from pydantic import BaseModel, Field

from flow_engine import BaseFlow


class First(BaseFlow):
    \"\"\"The first flow.\"\"\"

    class Inputs(BaseModel):
        name: str = Field(..., description="Who")
        size: int = Field(default=3, alias="Size")
        tags: list[str] = Field(default_factory=lambda: ["a"])

    async def _execute_flow_logic(self, inputs):
        return inputs


class Second(First):
    description = "Described by attribute."


class Undocumented(BaseFlow):
    async def _execute_flow_logic(self, inputs):
        return {}


def not_a_flow():
    return 1


INSTANCE = First()
"""


@pytest.fixture(autouse=True)
def _restore_sys_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Resolving ``file.py:Class`` puts the file's folder on sys.path; undo that after each test."""
    monkeypatch.setattr(sys, "path", list(sys.path))


@pytest.fixture
def dists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    made = Distributions(tmp_path / "site", monkeypatch)
    yield made
    made.cleanup()


def _write(path: Path, source: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    return path


# -- registered names --------------------------------------------------------------------------
def test_builtin_example_is_registered_and_loads_lazily():
    assert "article_processing" in registered_names()
    assert load_registered("article_processing") is ArticleProcessingFlow
    assert resolve_flow("article_processing") is ArticleProcessingFlow


def test_registered_names_import_nothing(dists):
    dists.make(
        "lazy-flows", "raise RuntimeError('imported!')\n", {"flow_engine.flows": {"lazy": "lazy_flows:X"}}
    )
    assert "lazy" in registered_names()
    assert "lazy_flows" not in sys.modules


def test_unknown_name_lists_registered_flows_and_a_close_match():
    with pytest.raises(UsageError) as info:
        resolve_flow("article_procesing")
    message = str(info.value)
    assert "no flow named 'article_procesing'" in message
    assert "Did you mean 'article_processing'?" in message
    assert "Registered flows: " in message and "article_processing" in message


def test_unknown_name_without_close_match_still_lists():
    with pytest.raises(UsageError) as info:
        resolve_flow("zzzz")
    assert "Did you mean" not in str(info.value)
    assert "article_processing" in str(info.value)


def test_registered_entry_point_that_fails_to_import(dists):
    dists.make(
        "bad-flows", "\n\nraise ValueError('bad config')\n", {"flow_engine.flows": {"bad": "bad_flows:Flow"}}
    )
    with pytest.raises(UsageError) as info:
        resolve_flow("bad")
    message = str(info.value)
    assert "flow 'bad' (bad_flows:Flow) failed to import: ValueError: bad config" in message
    assert "bad_flows.py, line 3" in message


def test_registered_entry_point_that_is_not_a_flow(dists):
    dists.make("fn-flows", "def f():\n    pass\n", {"flow_engine.flows": {"fn": "fn_flows:f"}})
    with pytest.raises(UsageError, match=r"flow 'fn' \(fn_flows:f\) is function f, not a flow"):
        resolve_flow("fn")


def test_same_name_from_two_distributions_is_a_clear_error(dists):
    for dist in ("twin-one", "twin-two"):
        module = dist.replace("-", "_")
        dists.make(dist, FLOWS, {"flow_engine.flows": {"twin": f"{module}:First"}})
    with pytest.raises(UsageError) as info:
        resolve_flow("twin")
    assert "'twin-one' (twin_one:First)" in str(info.value)
    assert "'twin-two' (twin_two:First)" in str(info.value)


def test_load_all_reports_failures_without_raising(dists):
    dists.make("good-flows", FLOWS, {"flow_engine.flows": {"good_one": "good_flows:First"}})
    dists.make("boom-flows", "raise ImportError('nope')\n", {"flow_engine.flows": {"boom": "boom_flows:F"}})
    entries = {e.name: e for e in load_all()}
    assert entries["good_one"].flow_class.__name__ == "First"
    assert entries["good_one"].distribution == "good-flows" and entries["good_one"].version == "1.0.0"
    assert entries["boom"].flow_class is None
    assert entries["boom"].error.startswith("failed to import: ImportError: nope")
    assert entries["article_processing"].flow_class is ArticleProcessingFlow


# -- module:Class ------------------------------------------------------------------------------
def test_module_and_class():
    assert (
        resolve_flow("flow_engine.examples.article_processing:ArticleProcessingFlow") is ArticleProcessingFlow
    )


def test_missing_module_says_so_and_hints_at_file_paths():
    with pytest.raises(
        UsageError, match=r"cannot import module 'no_such_pkg\.flows'.*path/to/file\.py:Class"
    ):
        resolve_flow("no_such_pkg.flows:Flow")


def test_module_whose_own_import_fails_shows_the_inner_error(tmp_path, monkeypatch):
    _write(tmp_path / "needs_missing.py", "import definitely_not_installed_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UsageError) as info:
        resolve_flow("needs_missing:Flow")
    assert "module 'needs_missing' failed to import" in str(info.value)
    assert "definitely_not_installed_xyz" in str(info.value)
    sys.modules.pop("needs_missing", None)


def test_missing_class_lists_the_flows_defined_there():
    with pytest.raises(UsageError) as info:
        resolve_flow("flow_engine.examples.article_processing:Nope")
    message = str(info.value)
    assert "module 'flow_engine.examples.article_processing' has no attribute 'Nope'" in message
    assert "flows defined there: ArticleProcessingFlow" in message


@pytest.mark.parametrize(
    ("attr", "kind"),
    [
        ("ExtractContentStep", "class ExtractContentStep"),
        ("BaseFlow", "BaseFlow itself"),
        ("Field", "function Field"),
        ("annotations", "a _Feature"),
    ],
)
def test_things_that_are_not_flows(attr, kind):
    with pytest.raises(UsageError) as info:
        resolve_flow(f"flow_engine.examples.article_processing:{attr}")
    assert f"is {kind}, not a flow" in str(info.value)
    assert "subclass of flow_engine.BaseFlow" in str(info.value)


def test_bare_dotted_name_that_is_not_registered():
    with pytest.raises(UsageError, match=r"no flow named 'some\.module'"):
        resolve_flow("some.module")


def test_empty_target():
    with pytest.raises(UsageError, match="no flow given"):
        resolve_flow("  ")


# -- path/to/file.py:Class ---------------------------------------------------------------------
def test_file_and_class(tmp_path):
    path = _write(tmp_path / "my flows" / "flows.py", FLOWS)
    cls = resolve_flow(f"{path}:Second")
    assert issubclass(cls, BaseFlow) and cls.__name__ == "Second"
    assert Path(sys.modules[cls.__module__].__file__) == path.resolve()
    assert resolve_flow(f"{path}:Second") is cls  # imported once


def test_relative_file_path(tmp_path):
    _write(tmp_path / "sub" / "rel_flows.py", FLOWS)  # cwd is tmp_path (tests/conftest.py)
    assert resolve_flow("sub/rel_flows.py:First").__name__ == "First"


def test_file_can_import_its_siblings(tmp_path):
    _write(tmp_path / "pkgdir" / "sibling_helpers.py", "GREETING = 'hi'\n")
    path = _write(
        tmp_path / "pkgdir" / "uses_sibling.py",
        """
        from sibling_helpers import GREETING
        from flow_engine import BaseFlow

        class Greeter(BaseFlow):
            greeting = GREETING
        """,
    )
    assert resolve_flow(f"{path}:Greeter").greeting == "hi"
    sys.modules.pop("sibling_helpers", None)


def test_file_without_class_picks_its_only_flow(tmp_path):
    path = _write(
        tmp_path / "single.py",
        "from flow_engine import BaseFlow\nfrom flow_engine.examples.article_processing import *\n\n"
        "class Only(BaseFlow):\n    pass\n",
    )
    assert resolve_flow(str(path)).__name__ == "Only"  # imported flows do not count


def test_file_without_class_and_several_flows_lists_them(tmp_path):
    path = _write(tmp_path / "several.py", FLOWS)
    with pytest.raises(UsageError) as info:
        resolve_flow(str(path))
    assert f"name the flow class: {path}:Class" in str(info.value)
    assert "First, Second, Undocumented" in str(info.value)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(UsageError, match=r"cannot load flow from 'nope/flows\.py': no such file"):
        resolve_flow("nope/flows.py:Flow")
    (tmp_path / "adir.py").mkdir()
    with pytest.raises(UsageError, match="a folder, not a file"):
        resolve_flow("adir.py:Flow")


def test_file_that_raises_names_the_line(tmp_path):
    path = _write(tmp_path / "broken_file.py", "x = 1\ny = 1 / 0\n")
    with pytest.raises(UsageError) as info:
        resolve_flow(f"{path}:Flow")
    assert "failed to import: ZeroDivisionError: division by zero" in str(info.value)
    assert "broken_file.py, line 2" in str(info.value)


def test_file_with_syntax_error(tmp_path):
    path = _write(tmp_path / "syntax_err.py", "def oops(:\n")
    with pytest.raises(UsageError, match="SyntaxError"):
        resolve_flow(f"{path}:Flow")


def test_file_attribute_that_is_not_a_flow(tmp_path):
    path = _write(tmp_path / "objs.py", FLOWS)
    with pytest.raises(UsageError, match="is function not_a_flow, not a flow"):
        resolve_flow(f"{path}:not_a_flow")
    with pytest.raises(UsageError, match="is a First, not a flow"):
        resolve_flow(f"{path}:INSTANCE")
    with pytest.raises(UsageError, match="has no attribute 'Third'; flows defined there: First, Second"):
        resolve_flow(f"{path}:Third")


# -- describing flows --------------------------------------------------------------------------
def test_describe_inputs(tmp_path):
    cls = resolve_flow(f"{_write(tmp_path / 'described.py', FLOWS)}:First")
    infos = {i.name: i for i in describe_inputs(cls)}
    assert infos["name"].required and infos["name"].type == "str" and infos["name"].description == "Who"
    assert infos["Size"].default == 3 and not infos["Size"].required  # the alias is what callers pass
    assert infos["tags"].default == ["a"] and infos["tags"].type == "list[str]"


def test_flow_description_prefers_attribute_then_own_docstring(tmp_path):
    path = _write(tmp_path / "docs_flows.py", FLOWS)
    assert flow_description(resolve_flow(f"{path}:First")) == "The first flow."
    assert flow_description(resolve_flow(f"{path}:Second")) == "Described by attribute."
    assert flow_description(resolve_flow(f"{path}:Undocumented")) == ""  # not BaseFlow's docstring


def test_type_names():
    from typing import Literal, Optional

    assert type_name(str) == "str"
    assert type_name(list[int]) == "list[int]"
    assert type_name(dict[str, list[int]]) == "dict[str, list[int]]"
    assert type_name(Optional[int]) == "int | None"  # noqa: UP045 - the old spelling on purpose
    assert type_name(int | None) == "int | None"
    assert type_name(Literal["a", "b"]) == "Literal['a', 'b']"
    assert type_name(ArticleProcessingFlow) == "ArticleProcessingFlow"
