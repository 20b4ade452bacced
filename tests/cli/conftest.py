"""CLI test helpers: real ``flow`` subprocesses with an isolated database, throwaway plugin distributions.

Subprocess tests are the honest ones for exit codes, tracebacks and stdout purity; click's CliRunner
(in-process, sharing the test's engine and its memory store) is used where the test needs to look at
what was recorded.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

# The database every `flow` subprocess uses. The SQL backend (plugins/sql) is being written; once it
# registers the sqlite scheme, switch to: "sqlite:///{tmp}/flow.db" (cross-process tests then run too).
SUBPROCESS_DATABASE_URL = "sqlite:///{tmp}/flow.db"

FLOW_SCRIPT = Path(sys.executable).with_name("flow")


def flow_command() -> list[str]:
    """The installed console script when there is one (what users run), else ``python -m``."""
    if FLOW_SCRIPT.exists():
        return [str(FLOW_SCRIPT)]
    return [sys.executable, "-m", "flow_engine.cli.main"]


def database_is_shared() -> bool:
    """True when subprocesses write somewhere this process can read (not ``memory://``)."""
    return not SUBPROCESS_DATABASE_URL.startswith("memory:")


# flows used by the run tests; written to a file so they can be named three ways
TEST_FLOWS = '''
"""Flows for the CLI tests: plain Python steps only, so no LLM and no litellm import."""

import asyncio
import sys
from typing import Literal

from pydantic import BaseModel, Field

from flow_engine import BaseFlow, BaseStep, UsageError


class Echo(BaseStep):
    step_name = "echo"

    async def run(self, inputs):
        return dict(inputs)


class WhichModel(BaseStep):
    step_name = "which_model"

    async def run(self, inputs):
        return self.resolve_model(None)


class Limits(BaseStep):
    step_name = "limits"

    async def run(self, inputs):
        from flow_engine.context import current_run

        ctx = current_run.get()
        return {"max_cost": ctx.max_cost, "max_tokens": ctx.max_tokens}


class Boom(BaseStep):
    step_name = "boom"

    async def run(self, inputs):
        raise ValueError("the widget exploded")


class Nap(BaseStep):
    step_name = "nap"

    async def run(self, inputs):
        await asyncio.sleep(60)
        return "rested"


class EchoFlow(BaseFlow):
    """Echoes its inputs back, with the Python type each arrived as.

    A second paragraph that `flow list` does not show.
    """

    flow_name = "echo_flow"
    total_steps = 1

    class Inputs(BaseModel):
        text: str = Field(..., description="Any text")
        count: int = Field(default=1, ge=0, description="How many")
        tags: list[str] = Field(default_factory=list, description="Labels")
        ratio: float | None = None
        mode: Literal["fast", "slow"] = "fast"
        note: str | None = None

    async def _execute_flow_logic(self, inputs):
        echoed = (await Echo().execute(inputs)).output_content
        return {"echo": echoed, "types": {k: type(v).__name__ for k, v in inputs.items()}}


class ModelFlow(BaseFlow):
    flow_name = "model_flow"

    async def _execute_flow_logic(self, inputs):
        return {"model": (await WhichModel().execute({})).output_content}


class BudgetFlow(BaseFlow):
    flow_name = "budget_flow"
    max_tokens = 999

    async def _execute_flow_logic(self, inputs):
        return (await Limits().execute({})).output_content


class FailingFlow(BaseFlow):
    flow_name = "failing_flow"

    async def _execute_flow_logic(self, inputs):
        await Echo().execute({"before": "boom"})
        await Boom().execute({})
        return {}


class MisusedFlow(BaseFlow):
    """Fails inside the run with a usage error (like a missing prompt template)."""

    flow_name = "misused_flow"

    async def _execute_flow_logic(self, inputs):
        raise UsageError("prompt file 'nowhere.md' not found")


class PrintingFlow(BaseFlow):
    flow_name = "printing_flow"

    async def _execute_flow_logic(self, inputs):
        print("chatty flow output on stdout")
        return {"ok": True}


class SlowFlow(BaseFlow):
    flow_name = "slow_flow"

    async def _execute_flow_logic(self, inputs):
        await Echo().execute({"step": 1})
        await Nap().execute({})
        return {}


class NoInputsFlow(BaseFlow):
    flow_name = "no_inputs_flow"

    async def _execute_flow_logic(self, inputs):
        return {"got": inputs}


class ParentFlow(BaseFlow):
    flow_name = "parent_flow"

    async def _execute_flow_logic(self, inputs):
        await Echo().execute({"first": True})
        child = await EchoFlow().execute({"text": "from parent"})
        return {"child": child["echo"]["text"]}


class NotAFlow:
    pass


def helper():
    return 1
'''


@pytest.fixture(autouse=True)
def _restore_sys_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Running a ``file.py:Class`` flow puts the file's folder on sys.path; undo that after each test."""
    monkeypatch.setattr(sys, "path", list(sys.path))


@dataclass
class Dist:
    """A throwaway installed distribution: a module plus its ``*.dist-info`` in ``site``."""

    site: Path
    name: str
    module: str


class Distributions:
    """Creates throwaway distributions in one site folder (on sys.path and PYTHONPATH of subprocesses)."""

    def __init__(self, site: Path, monkeypatch: pytest.MonkeyPatch):
        self.site = site
        self.modules: list[str] = []
        site.mkdir(parents=True, exist_ok=True)
        monkeypatch.syspath_prepend(str(site))

    def make(
        self,
        name: str,
        source: str,
        entry_points: dict[str, dict[str, str]],
        *,
        version: str = "1.0.0",
        module: str | None = None,
    ) -> Dist:
        module = module or name.replace("-", "_")
        (self.site / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        info = self.site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8"
        )
        sections = []
        for group, eps in entry_points.items():
            lines = "\n".join(f"{ep} = {target}" for ep, target in eps.items())
            sections.append(f"[{group}]\n{lines}\n")
        (info / "entry_points.txt").write_text("\n".join(sections), encoding="utf-8")
        self.modules.append(module)
        importlib.invalidate_caches()
        return Dist(self.site, name, module)

    def cleanup(self) -> None:
        for module in self.modules:
            sys.modules.pop(module, None)


@pytest.fixture
def dists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Distributions]:
    made = Distributions(tmp_path / "site", monkeypatch)
    yield made
    made.cleanup()
    importlib.invalidate_caches()


@pytest.fixture
def flows_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """``<tmp>/flowsrc/cli_test_flows.py`` holding TEST_FLOWS; its folder is importable."""
    folder = tmp_path / "flowsrc"
    folder.mkdir()
    path = folder / "cli_test_flows.py"
    path.write_text(TEST_FLOWS, encoding="utf-8")
    monkeypatch.syspath_prepend(str(folder))
    importlib.invalidate_caches()
    yield path
    sys.modules.pop("cli_test_flows", None)


@pytest.fixture
def registered_flows(dists: Distributions, flows_file: Path) -> Distributions:
    """The test flows registered by name through a ``flow_engine.flows`` entry-point distribution."""
    names = ["echo_flow", "model_flow", "failing_flow", "misused_flow", "printing_flow", "slow_flow"]
    classes = ["EchoFlow", "ModelFlow", "FailingFlow", "MisusedFlow", "PrintingFlow", "SlowFlow"]
    dists.make(
        "cli-test-flows",
        "",
        {"flow_engine.flows": {n: f"cli_test_flows:{c}" for n, c in zip(names, classes, strict=True)}},
        module="cli_test_flows_dist",
    )
    return dists


@dataclass
class Completed:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@pytest.fixture
def flow_env(tmp_path: Path) -> Callable[..., dict[str, str]]:
    """Environment of a `flow` subprocess: no inherited FLOW_ENGINE_*, database and data under tmp_path."""

    def build(**extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLOW_ENGINE_")}
        env["FLOW_ENGINE_DATABASE_URL"] = SUBPROCESS_DATABASE_URL.format(tmp=tmp_path)
        env["FLOW_ENGINE_DATA_DIR"] = str(tmp_path / "data")
        env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
        extra_paths = [tmp_path / "site", tmp_path / "flowsrc"]  # see the dists and flows_file fixtures
        env["PYTHONPATH"] = os.pathsep.join(str(p) for p in extra_paths if p.is_dir())
        env["NO_COLOR"] = "1"
        env.update(extra)
        return env

    return build


@pytest.fixture
def flow(flow_env: Callable[..., dict[str, str]], tmp_path: Path) -> Callable[..., Completed]:
    """Run ``flow ARGS`` in a subprocess (cwd tmp_path) and return its exit code, stdout and stderr."""

    def run(
        *args: str, input: str | None = None, env: dict[str, str] | None = None, timeout: float = 120
    ) -> Completed:
        proc = subprocess.run(
            [*flow_command(), *args],
            input=input,
            capture_output=True,
            text=True,
            env=env or flow_env(),
            cwd=tmp_path,
            timeout=timeout,
        )
        return Completed(proc.returncode, proc.stdout, proc.stderr)

    return run


@pytest.fixture
def cli_invoke() -> Callable[..., Result]:
    """Run the ``flow`` click group in this process (same engine and memory store as the test)."""
    from flow_engine.cli.main import cli

    def invoke(*args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)

    return invoke
