"""`flow batch`: one run per line, a hard concurrency cap, a batch id, bad lines by number, an output
file in input order, and a resume (after a failure, and after SIGKILL) that repeats no completed item."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest
from click.testing import CliRunner
from pydantic import BaseModel

from flow_engine import BaseFlow, BaseStep
from flow_engine.cli.main import cli
from flow_engine.engine import get_engine
from flow_engine.storage import RunFilter

from .conftest import flow_command


class Gauge:
    now = 0
    most = 0
    ran: ClassVar[list[int]] = []
    fail: ClassVar[set[int]] = set()


class Square(BaseStep):
    step_name = "square"

    class Inputs(BaseModel):
        n: int

    async def run(self, inputs: Inputs) -> int:
        Gauge.now += 1
        Gauge.most = max(Gauge.most, Gauge.now)
        try:
            await asyncio.sleep(0.02)
            Gauge.ran.append(inputs.n)
            if inputs.n in Gauge.fail:
                raise ValueError(f"item {inputs.n} fails")
            return inputs.n * inputs.n
        finally:
            Gauge.now -= 1


class Describe(BaseStep):
    step_name = "describe"

    async def run(self, inputs: dict[str, Any]) -> str:
        return f"{inputs['n']} squared is {inputs['square']}"


class SquareFlow(BaseFlow):
    flow_name = "square_flow"

    class Inputs(BaseModel):
        n: int

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        square = await Square().execute({"n": inputs["n"]})
        text = await Describe().execute({"n": inputs["n"], "square": square.output_content})
        return {"square": square.output_content, "text": text.output_content}


TARGET = f"{__name__}:SquareFlow"


@pytest.fixture(autouse=True)
def fresh_gauge():
    Gauge.now = Gauge.most = 0
    Gauge.ran, Gauge.fail = [], set()


def write_items(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def batch(*args: str) -> Any:
    return CliRunner().invoke(cli, ["batch", *args], catch_exceptions=False)


def batch_id_of(stderr: str) -> str:
    line = next(line for line in stderr.splitlines() if line.startswith("Batch "))
    return line.split()[1].rstrip(":")


def test_every_line_runs_once_in_a_batch_with_its_output_in_input_order(tmp_path):
    items = write_items(tmp_path / "items.jsonl", [json.dumps({"n": n}) for n in range(12)])
    out = tmp_path / "results.jsonl"
    result = batch(TARGET, "-f", str(items), "-c", "3", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert Gauge.most == 3  # the cap held, and was used
    assert sorted(Gauge.ran) == list(range(12))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["line"] for r in rows] == list(range(1, 13))
    assert [r["outputs"]["square"] for r in rows] == [n * n for n in range(12)]
    assert {r["status"] for r in rows} == {"completed"}
    batch_id = batch_id_of(result.stderr)
    runs = get_engine().store.find_runs(RunFilter(batch_id=batch_id), limit=100)
    assert sorted(str(r.id) for r in runs) == sorted(r["run_id"] for r in rows)
    assert "[batch " in result.stderr and "done" in result.stderr and "ETA" in result.stderr
    listed = CliRunner().invoke(cli, ["runs", "--batch", batch_id, "--json", "--limit", "100"])
    assert len(json.loads(listed.stdout)) == 12


def test_bad_lines_are_named_by_number_and_skipped(tmp_path):
    lines = ['{"n": 1}', "not json", '{"n": "two"}', "", "[1, 2]", '{"n": 5}']
    items = write_items(tmp_path / "items.jsonl", lines)
    result = batch(TARGET, "-f", str(items), "--json")
    assert result.exit_code == 1  # something was skipped
    assert "line 2: not valid JSON" in result.stderr
    assert "line 3: invalid inputs for flow 'square_flow': - n:" in result.stderr
    assert "line 5: expected a JSON object of inputs, got list" in result.stderr
    summary = json.loads(result.stdout)
    assert (summary["completed"], summary["failed"], summary["skipped_lines"]) == (2, 0, 3)
    assert sorted(Gauge.ran) == [1, 5]


def test_strict_stops_before_anything_is_written(tmp_path):
    items = write_items(tmp_path / "items.jsonl", ['{"n": 1}', '{"m": 2}'])
    result = batch(TARGET, "-f", str(items), "--strict")
    assert result.exit_code == 2
    assert "line 2:" in result.stderr and "nothing was run" in result.stderr
    assert "Traceback" not in result.output
    assert Gauge.ran == []
    assert get_engine().store.list_runs(limit=10) == []


def test_a_failed_item_does_not_stop_the_others_and_resume_runs_only_it(tmp_path):
    items = write_items(tmp_path / "items.jsonl", [json.dumps({"n": n}) for n in range(6)])
    Gauge.fail = {3}
    first = batch(TARGET, "-f", str(items), "-c", "2")
    assert first.exit_code == 1
    assert sorted(Gauge.ran) == list(range(6))
    batch_id = batch_id_of(first.stderr)
    assert "1 failed" in first.stderr and f"flow runs --batch {batch_id} --status failed" in first.stderr
    Gauge.fail, Gauge.ran = set(), []
    again = batch("--resume", batch_id, "-o", str(tmp_path / "out.jsonl"))
    assert again.exit_code == 0, again.output
    assert Gauge.ran == [3]  # only the failed item ran again
    assert "5 completed earlier" in again.stderr
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["outputs"]["square"] for r in rows] == [n * n for n in range(6)]
    runs = get_engine().store.find_runs(RunFilter(batch_id=batch_id), limit=100)
    assert len(runs) == 6  # the failed run was resumed in place, not started again


def test_usage_errors_exit_2_without_a_traceback(tmp_path):
    assert batch(TARGET).exit_code == 2
    missing = batch(TARGET, "-f", str(tmp_path / "nope.jsonl"))
    assert missing.exit_code == 2 and "no such file" in missing.stderr
    nowhere = batch("--resume", "0123456789ab")  # no database yet: none is created to look
    assert nowhere.exit_code == 2 and "no database at" in nowhere.stderr
    get_engine().store  # noqa: B018 - the database exists from here on
    unknown = batch("--resume", "0123456789ab")
    assert unknown.exit_code == 2 and "no runs of batch" in unknown.stderr


@pytest.mark.parametrize(
    ("output", "problem"),
    [
        ("results", "--output results: is a folder, not a file; name the file to write"),
        ("missing/out.jsonl", "--output missing/out.jsonl: no folder missing; create it first"),
        ("items.jsonl/out.jsonl", "--output items.jsonl/out.jsonl: items.jsonl is not a folder"),
    ],
)
def test_an_output_that_cannot_be_written_is_refused_before_any_run(tmp_path, output, problem):
    write_items(tmp_path / "items.jsonl", [json.dumps({"n": n}) for n in range(3)])
    (tmp_path / "results").mkdir()
    result = batch(TARGET, "-f", "items.jsonl", "-o", output)
    assert (result.exit_code, result.stderr) == (2, f"Error: {problem}\n")
    assert Gauge.ran == [] and get_engine().store.list_runs(limit=10) == []


def test_an_output_under_the_home_folder_is_written_where_it_was_checked(tmp_path, monkeypatch):
    write_items(tmp_path / "items.jsonl", [json.dumps({"n": n}) for n in range(2)])
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    result = batch(TARGET, "-f", "items.jsonl", "--output=~/out.jsonl")  # no shell to expand ``~``
    assert result.exit_code == 0, result.stderr
    assert len((tmp_path / "home" / "out.jsonl").read_text().splitlines()) == 2
    assert not (tmp_path / "~").exists()


def test_an_output_folder_that_takes_no_file_is_refused_before_any_run(tmp_path, monkeypatch):
    write_items(tmp_path / "items.jsonl", [json.dumps({"n": 1})])

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("flow_engine.cli.checks.tempfile.mkstemp", refused)  # as for a read-only folder
    result = batch(TARGET, "-f", "items.jsonl", "-o", "out.jsonl")
    assert (result.exit_code, result.stderr) == (
        2,
        "Error: --output out.jsonl: cannot write in . (Permission denied)\n",
    )
    assert Gauge.ran == [] and get_engine().store.list_runs(limit=10) == []


def test_an_unknown_model_or_output_with_background_is_refused_before_any_run(tmp_path):
    write_items(tmp_path / "items.jsonl", [json.dumps({"n": n}) for n in range(3)])
    unknown = batch(TARGET, "-f", "items.jsonl", "-m", "no-such-model-xyz")
    assert unknown.exit_code == 2 and "unknown model 'no-such-model-xyz'" in unknown.stderr
    background = batch(TARGET, "-f", "items.jsonl", "-o", "out.jsonl", "--background")
    assert background.exit_code == 2
    assert "--output" in background.stderr and "--background" in background.stderr
    assert Gauge.ran == [] and get_engine().store.list_runs(limit=10) == []


SLOW_FLOW = """
import asyncio, os
from pydantic import BaseModel
from flow_engine import BaseFlow, BaseStep

class Work(BaseStep):
    step_name = "work"

    async def run(self, inputs):
        with open(os.environ["RAN_FILE"], "a") as f:
            f.write(f"{inputs['n']}\\n")
        await asyncio.sleep(float(os.environ.get("ITEM_SECONDS", "0")))
        return inputs["n"] + 1

class SlowFlow(BaseFlow):
    flow_name = "slow_batch_flow"

    class Inputs(BaseModel):
        n: int

    async def _execute_flow_logic(self, inputs):
        done = await Work().execute({"n": inputs["n"]})
        return {"next": done.output_content}
"""


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")
def test_resume_after_sigkill_mid_batch_repeats_no_completed_item(tmp_path, flow_env):
    script = tmp_path / "slow_flow.py"
    script.write_text(SLOW_FLOW, encoding="utf-8")
    items = write_items(tmp_path / "items.jsonl", [json.dumps({"n": n}) for n in range(10)])
    ran = tmp_path / "ran.txt"
    env = flow_env(
        RAN_FILE=str(ran),
        ITEM_SECONDS="0.4",
        FLOW_ENGINE_HEARTBEAT_INTERVAL="0.2",
        FLOW_ENGINE_STALE_AFTER="1",
    )
    process = subprocess.Popen(
        [*flow_command(), "batch", f"{script}:SlowFlow", "-f", str(items), "-c", "2"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    from flow_engine.plugins.sql.store import SqlStore

    store = SqlStore(env["FLOW_ENGINE_DATABASE_URL"])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            completed = [r for r in store.list_runs(limit=100) if r.status == "completed"]
            if len(completed) >= 4:
                break
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        done_before = {r.inputs["n"] for r in store.list_runs(limit=100) if r.status == "completed"}
        assert len(done_before) >= 4
        batch_id = store.list_runs(limit=1)[0].batch_id
    finally:
        store.close()
    time.sleep(1.5)  # the killed runs' heartbeats go stale
    resumed = subprocess.run(
        [*flow_command(), "batch", "--resume", batch_id, "-c", "2"],
        env={**env, "ITEM_SECONDS": "0"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr
    counts: dict[int, int] = {}
    for line in ran.read_text().split():
        counts[int(line)] = counts.get(int(line), 0) + 1
    assert set(counts) == set(range(10))
    assert all(counts[n] == 1 for n in done_before)  # no completed item ran again
    assert f"{len(done_before)} completed earlier" in resumed.stderr


def test_background_hands_every_item_to_the_executor_under_one_batch(tmp_path, engine):
    from flow_engine.executors import get_executor
    from tests.core.test_executors import InlinePlugin

    engine.plugins.register(InlinePlugin(), name="inline-executor")
    try:
        items = write_items(tmp_path / "items.jsonl", [json.dumps({"n": n}) for n in range(4)] + ["{}"])
        result = batch(TARGET, "-f", str(items), "--background", "--executor", "inline", "--json")
        assert result.exit_code == 1  # the bad last line was skipped
        summary = json.loads(result.stdout)
        assert (summary["submitted"], summary["skipped_lines"]) == (4, 1)
        handed = get_executor("inline").handed
        assert [run.inputs["n"] for run, _ in handed] == [0, 1, 2, 3]
        assert {run.batch_id for run, _ in handed} == {summary["batch_id"]}
        pending = get_engine().store.find_runs(RunFilter(batch_id=summary["batch_id"]), limit=10)
        assert {r.status for r in pending} == {"pending"} and len(pending) == 4
        assert Gauge.ran == []  # nothing ran here
    finally:
        engine.plugins.unregister("inline-executor")


def test_resume_in_the_background_hands_back_failed_runs_and_submits_new_lines(tmp_path, engine):
    from flow_engine import flow_runner
    from flow_engine.executors import execute_submitted, get_executor
    from tests.core.test_executors import InlinePlugin

    Gauge.fail = {1, 3}
    items = write_items(tmp_path / "items.jsonl", [json.dumps({"n": n}) for n in range(6)])
    first = batch(TARGET, "-f", str(items))
    assert first.exit_code == 1
    batch_id = batch_id_of(first.stderr)
    store = get_engine().store
    failed = {r.inputs["n"]: r for r in store.find_runs(RunFilter(batch_id=batch_id, status="failed"))}
    assert set(failed) == {1, 3}
    write_items(items, [json.dumps({"n": n}) for n in range(8)])  # two lines added since
    Gauge.fail, Gauge.ran = set(), []
    engine.plugins.register(InlinePlugin(), name="inline-executor")
    try:
        result = batch("--resume", batch_id, "--background", "--executor", "inline", "--json")
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)
        counts = ("submitted", "handed_back", "completed_earlier", "in_progress", "taken_elsewhere")
        assert tuple(summary[k] for k in counts) == (2, 2, 4, 0, 0)
        assert "2 failed, cancelled or crashed run(s) handed back to be resumed" in result.stderr
        handed = get_executor("inline").handed
        assert sorted(run.inputs["n"] for run, _ in handed) == [1, 3, 6, 7]
        assert {failed[1].id, failed[3].id} <= {run.id for run, _ in handed}  # the same runs, in place
        for n in (1, 3):
            again = store.get_run(failed[n].id)
            assert again.status == "pending" and again.execution_mode == "background"
            assert again.flow_metadata["background"]["executor"] == "inline"
        assert Gauge.ran == []  # nothing ran here
        # a second hand-back of a run already handed back is refused: it is claimed once
        assert asyncio.run(flow_runner.resubmit(failed[1], SquareFlow, executor="inline")) is False
        for run, _ in handed:  # what a worker does with each
            assert asyncio.run(execute_submitted(run.id, "worker-1")) == "completed"
        assert sorted(Gauge.ran) == [1, 3, 6, 7]  # the completed items did not run again
        runs = store.find_runs(RunFilter(batch_id=batch_id), limit=100)
        assert sorted(r.batch_line for r in runs) == list(range(1, 9))  # one run per line
        assert {r.status for r in runs} == {"completed"}
        assert store.get_run(failed[3].id).outputs == {"square": 9, "text": "3 squared is 9"}
        done = batch("--resume", batch_id, "--background", "--executor", "inline", "--json")
        assert json.loads(done.stdout)["completed_earlier"] == 8 and len(handed) == 4
    finally:
        engine.plugins.unregister("inline-executor")


def test_items_run_by_another_resume_are_counted_apart_and_marked_in_the_output(tmp_path, capsys):
    from flow_engine.batch import BatchProgress, ItemResult
    from flow_engine.cli.batch_cmd import _Display, _summary, _write_output

    results = [
        ItemResult(1, None, "completed", {"square": 0}),
        ItemResult(
            2,
            None,
            "running",
            error="run X of another process resuming batch b has this item",
            elsewhere=True,
        ),
        ItemResult(3, None, "failed", error="boom"),
    ]
    _summary("b", results, None, 1.0, True, 0)
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert (summary["completed"], summary["failed"], summary["run_elsewhere"]) == (1, 1, 1)
    assert "1 completed, 1 failed, 1 run by another process resuming it" in captured.err
    out = tmp_path / "out.jsonl"
    _write_output(out, results)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r.get("elsewhere", False) for r in rows] == [False, True, False]
    progress = BatchProgress(total=3, completed=1, failed=1, elsewhere=1)
    assert "1 done, 1 failed, 1 elsewhere, 0 running" in _Display("b")._describe(progress)
