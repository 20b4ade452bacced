"""Real ``flow`` processes against the fake OpenAI server in its own process (with latency), on a SQLite
file this test process reads too. Every process is killed at teardown; every wait has a deadline."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import flow_command
from tests.e2e.durable_flows import STRUCTURED_ANSWERS
from tests.fake_openai_server import API_KEY, RemoteFakeOpenAI, Reply

FLOWS_FILE = Path(__file__).with_name("durable_flows.py")
LATENCY_MS = 150
HEARTBEAT_INTERVAL = 0.2  # seconds, in the `flow run` processes
STALE_AFTER = 1.0  # seconds, in the processes that report runs (flow runs / show / recover)
MODEL = "openai/gpt-4o-mini"  # priced in litellm's bundled price map: costs are known and nonzero


def flow_target(cls_name: str) -> str:
    return f"{FLOWS_FILE}:{cls_name}"


@pytest.fixture(scope="module")
def llm_server() -> Iterator[RemoteFakeOpenAI]:
    """The fake OpenAI-compatible server in its own process, answering after LATENCY_MS."""
    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_openai_server", "--latency-ms", str(LATENCY_MS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=root,
        env=env,
    )
    try:
        assert process.stdout is not None
        with selectors.DefaultSelector() as selector:  # its READY line, within a deadline
            selector.register(process.stdout, selectors.EVENT_READ)
            if not selector.select(timeout=30):
                raise RuntimeError("the fake server did not start within 30 s")
        line = process.stdout.readline()
        if not line.startswith("READY "):
            raise RuntimeError(f"the fake server did not start: {line!r}")
        yield RemoteFakeOpenAI(line.split()[1])
    finally:
        process.kill()
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


@pytest.fixture
def llm(llm_server: RemoteFakeOpenAI) -> RemoteFakeOpenAI:
    """The server with an empty request log, answering the structured prompts of durable_flows.py."""
    llm_server.reset()
    for tag, answer in STRUCTURED_ANSWERS.items():
        llm_server.answer(tag, Reply(json=answer))
    return llm_server


@dataclass
class Completed:
    returncode: int
    stdout: str
    stderr: str


class Running:
    """A ``flow`` process in the background; its output goes to files (a full pipe never blocks it)."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path, name: str):
        self.args = args
        self.out_path = cwd / f"{name}.out"
        self.err_path = cwd / f"{name}.err"
        with self.out_path.open("wb") as out, self.err_path.open("wb") as err:
            self.process = subprocess.Popen(args, env=env, cwd=cwd, stdout=out, stderr=err)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no cleanup, no last write; what a crash or an OOM kill looks like."""
        if self.alive():
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def wait(self, timeout: float) -> Completed:
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.args} did not end within {timeout}s:\n{self.stderr}") from None
        return Completed(code, self.stdout, self.stderr)

    @property
    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")


class FlowProcesses:
    """Starts ``flow`` commands with an isolated environment (database under tmp_path, the fake server's
    URL, short heartbeat and stale thresholds) and kills whatever still runs at teardown."""

    def __init__(self, tmp_path: Path, base_url: str):
        self.tmp_path = tmp_path
        self.base_url = base_url
        self.started: list[Running] = []

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLOW_ENGINE_")}
        env.update(
            FLOW_ENGINE_DATABASE_URL=f"sqlite:///{self.tmp_path / 'flow.db'}",
            FLOW_ENGINE_DATA_DIR=str(self.tmp_path / "data"),
            FLOW_ENGINE_MODEL=MODEL,
            FLOW_ENGINE_API_BASE=self.base_url,
            FLOW_ENGINE_API_KEY=API_KEY,
            FLOW_ENGINE_HEARTBEAT_INTERVAL=str(HEARTBEAT_INTERVAL),
            FLOW_ENGINE_STALE_AFTER=str(STALE_AFTER),
            FLOW_ENGINE_RETRY_INITIAL_DELAY="0.01",
            FLOW_ENGINE_RETRY_MAX_DELAY="0.05",
            LITELLM_LOCAL_MODEL_COST_MAP="True",
            NO_COLOR="1",
        )
        env.update(extra)
        return env

    def start(self, *args: str, env: dict[str, str] | None = None) -> Running:
        running = Running(
            [*flow_command(), *args], env or self.env(), self.tmp_path, f"flow-{len(self.started)}"
        )
        self.started.append(running)
        return running

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Completed:
        return self.start(*args, env=env).wait(timeout)

    def kill_all(self) -> None:
        for running in self.started:
            running.kill()


@pytest.fixture
def flows(tmp_path: Path, llm: RemoteFakeOpenAI) -> Iterator[FlowProcesses]:
    processes = FlowProcesses(tmp_path, llm.base_url)
    try:
        yield processes
    finally:
        processes.kill_all()


def wait_until(
    condition: Callable[[], Any], *, timeout: float, what: str, process: Running | None = None
) -> Any:
    """Poll ``condition`` every 20 ms until it returns something truthy; fail after ``timeout`` seconds
    (or as soon as ``process`` has ended, with its stderr)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if process is not None and not process.alive():
            raise AssertionError(f"the process ended before {what}:\n{process.stderr}")
        if time.monotonic() > deadline:
            detail = f":\n{process.stderr}" if process is not None else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{detail}")
        time.sleep(0.02)
