"""The pytest fixtures of ``flow_engine.testing`` (a ``pytest11`` plugin, so loaded in every pytest run).

Loaded into every test session of every project that installs flow-engine, so: nothing is autouse,
fixture names say whose they are, and flow-engine itself is imported only when a fixture is used (the
engine pulls in pydantic and friends; a project's unrelated tests should not pay for them).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # pragma: no cover
    from ..engine import Engine
    from ..llm.cassette import Cassette
    from .scripted_model import ScriptedModel

ENV_PREFIX = "FLOW_ENGINE_"
KEPT_ENV_PREFIX = "FLOW_ENGINE_TEST_"  # a project's own test settings (not engine settings)
DEFAULT_SETTINGS: dict[str, Any] = {
    "model": "offline/default",  # no network and no key unless a test asks for them
    "retry_initial_delay": 0.01,  # a retried failure costs milliseconds, not seconds
    "retry_max_delay": 0.05,
}


@contextmanager
def temporary_engine(
    folder: str | os.PathLike[str], *, monkeypatch: pytest.MonkeyPatch | None = None, **settings: Any
) -> Iterator[Engine]:
    """A fresh engine whose database and data live in ``folder``, torn down afterwards.

    ``FLOW_ENGINE_*`` variables from the environment are hidden for the duration (a developer's
    ``FLOW_ENGINE_MODEL`` must not make a test call a real model). The database is the default SQLite
    file of the data folder ``folder/data``, which is exported as ``FLOW_ENGINE_DATA_DIR``: a ``flow``
    subprocess started by the test uses the same database. (The URL itself is not exported: the ``flow``
    CLI would then replace the test's engine by one built from the environment.)
    ``settings`` override :data:`DEFAULT_SETTINGS` (the offline model, fast retries); ``None`` unsets one.
    The environment is changed through ``monkeypatch`` when given (a test's own ``monkeypatch.setenv``
    calls are then undone in the right order), else through a private one.
    """
    from ..engine import configure, reset_engine

    folder = Path(folder)
    options: dict[str, Any] = {"data_dir": folder / "data", **DEFAULT_SETTINGS, **settings}
    options = {k: v for k, v in options.items() if v is not None}
    with ExitStack() as stack:
        env = monkeypatch or stack.enter_context(pytest.MonkeyPatch.context())
        for name in list(os.environ):
            if name.startswith(ENV_PREFIX) and not name.startswith(KEPT_ENV_PREFIX):
                env.delenv(name)
        if "data_dir" in options:
            env.setenv(f"{ENV_PREFIX}DATA_DIR", str(options["data_dir"]))
        try:
            yield configure(**options)
        finally:
            reset_engine()


# -- pytest hooks -------------------------------------------------------------------------------------
def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("flow-engine")
    group.addoption(
        "--flow-engine-record",
        action="store_true",
        default=False,
        help="llm_cassette fixture: make the real LLM calls and re-record the cassettes instead of "
        "replaying them",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "cassette(path): the llm_cassette fixture's file, relative to the test file's folder"
    )


# -- fixtures -----------------------------------------------------------------------------------------
@pytest.fixture
def flow_engine_settings() -> dict[str, Any]:
    """Settings of the ``isolated_engine`` fixture, over its defaults; override it to change them."""
    return {}


@pytest.fixture
def isolated_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flow_engine_settings: dict[str, Any]
) -> Iterator[Engine]:
    """A fresh engine for one test: SQLite database and data folder under ``tmp_path``, the offline model
    as default, fast retries, no ``FLOW_ENGINE_*`` from the environment."""
    with temporary_engine(tmp_path, monkeypatch=monkeypatch, **flow_engine_settings) as engine:
        yield engine


@pytest.fixture
def offline_model(isolated_engine: Engine) -> Iterator[Engine]:
    """Every LLM call answered by the offline model, even those of steps whose class pins a real model."""
    from ..llm.hook import call_plugins
    from .scripted_model import RouteToOffline

    with call_plugins(RouteToOffline()):
        yield isolated_engine


@pytest.fixture
def scripted(isolated_engine: Engine) -> Iterator[ScriptedModel]:
    """Scripted answers: ``scripted.respond("summarize", Summary(...))``, then ``scripted.expect(...)``.

    Every LLM call of the test (any step, any model) is answered from the script; an unscripted one fails.
    """
    from .scripted_model import ScriptedModel

    script = ScriptedModel()
    with script.installed():
        yield script


@pytest.fixture
def llm_cassette(request: pytest.FixtureRequest, isolated_engine: Engine) -> Iterator[Cassette]:
    """The test's LLM calls replayed from a cassette (recorded with ``pytest --flow-engine-record``).

    The file is ``cassettes/<test module>/<test name>.json`` beside the test file, or the path given by
    ``@pytest.mark.cassette("name.json")`` (relative to the test file's folder).
    """
    from ..llm.cassette import cassette

    folder = Path(request.node.path).parent
    marker = request.node.get_closest_marker("cassette")
    if marker is not None and marker.args:
        path = folder / str(marker.args[0])
    else:
        name = re.sub(r"[^\w.-]+", "_", request.node.name).strip("_")
        path = folder / "cassettes" / Path(request.node.path).stem / f"{name}.json"
    recording = bool(request.config.getoption("flow_engine_record"))
    with cassette(path, "record" if recording else "replay") as tape:
        yield tape
