"""``flow run``: targets, inputs, validation, progress, outputs, --json, exit codes, Ctrl-C.

Subprocess tests check what a user or a script sees (exit code, stdout, stderr, no traceback);
in-process tests (CliRunner) also look at what was recorded in the test's memory store.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from flow_engine.engine import get_engine
from flow_engine.plugin_manager import PluginRegistry

from .conftest import database_is_shared, flow_command

pytestmark = pytest.mark.usefixtures("flows_file")

ECHO = "flowsrc/cli_test_flows.py:EchoFlow"  # relative to the subprocess's cwd (tmp_path)


def _echo_target(flows_file: Path) -> str:
    return f"{flows_file}:EchoFlow"


# -- targets -----------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("how", ["file", "module", "name"])
def test_flow_named_three_ways_runs_and_prints_outputs(how, flow, registered_flows):
    target = {"file": ECHO, "module": "cli_test_flows:EchoFlow", "name": "echo_flow"}[how]
    result = flow("run", target, "--input", "text=hello")
    assert result.returncode == 0, result.stderr
    outputs = json.loads(result.stdout)  # stdout is the outputs, pretty JSON, nothing else
    assert outputs["echo"] == {
        "text": "hello",
        "count": 1,
        "tags": [],
        "ratio": None,
        "mode": "fast",
        "note": None,
    }
    assert "\n  " in result.stdout  # indented, for people
    run_id = result.stderr.split("Run ", 1)[1].split()[0]
    uuid.UUID(run_id)
    assert f"flow show {run_id}" in result.stderr
    assert "completed" in result.stderr


def test_unknown_flow_lists_registered_ones_and_suggests(flow, registered_flows):
    result = flow("run", "echo_flw")
    assert result.returncode == 2
    assert "no flow named 'echo_flw'" in result.stderr
    assert "Did you mean 'echo_flow'?" in result.stderr
    assert "article_processing" in result.stderr and "failing_flow" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_not_a_flow_class_is_a_usage_error(flow):
    result = flow("run", "flowsrc/cli_test_flows.py:NotAFlow")
    assert result.returncode == 2
    assert "class NotAFlow, not a flow" in result.stderr
    assert "subclass of flow_engine.BaseFlow" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_flow_file_is_a_usage_error(flow):
    result = flow("run", "nowhere/flows.py:Thing")
    assert result.returncode == 2
    assert "no such file" in result.stderr and "nowhere/flows.py" in result.stderr


def test_missing_argument_is_exit_2(flow):
    result = flow("run")
    assert result.returncode == 2
    assert "Missing argument" in result.stderr


# -- inputs ------------------------------------------------------------------------------------
def test_json_values_for_non_text_fields_text_stays_text(cli_invoke, flows_file):
    result = cli_invoke(
        "run",
        _echo_target(flows_file),
        "--json",
        "--input",
        "text=42",  # a str field: stays the string "42"
        "--input",
        "count=3",
        "--input",
        'tags=["a","b"]',
        "--input",
        "ratio=0.5",
        "--input",
        "mode=slow",  # not JSON: stays text, pydantic checks it
        "--input",
        "note=null",  # str | None is text: the string "null"
    )
    assert result.exit_code == 0, result.stderr
    echo = json.loads(result.stdout)["outputs"]["echo"]
    assert echo == {
        "text": "42",
        "count": 3,
        "tags": ["a", "b"],
        "ratio": 0.5,
        "mode": "slow",
        "note": "null",
    }


def test_input_at_file_reads_text_and_missing_file_is_named(cli_invoke, flows_file, tmp_path):
    (tmp_path / "article.txt").write_text("Line one.\nLine two.\n", encoding="utf-8")
    (tmp_path / "tags.json").write_text('["x", "y"]', encoding="utf-8")
    ok = cli_invoke(
        "run", _echo_target(flows_file), "--json", "-i", "text=@article.txt", "-i", "tags=@tags.json"
    )
    assert ok.exit_code == 0, ok.stderr
    assert json.loads(ok.stdout)["outputs"]["echo"]["text"] == "Line one.\nLine two.\n"
    assert json.loads(ok.stdout)["outputs"]["echo"]["tags"] == ["x", "y"]

    missing = cli_invoke("run", _echo_target(flows_file), "-i", "text=@no-such-article.txt")
    assert missing.exit_code == 2
    assert "no such file 'no-such-article.txt'" in missing.stderr
    assert len(get_engine().store.list_runs()) == 1  # only the successful run


def test_double_at_is_a_literal_at(cli_invoke, flows_file):
    result = cli_invoke("run", _echo_target(flows_file), "--json", "-i", "text=@@handle")
    assert json.loads(result.stdout)["outputs"]["echo"]["text"] == "@handle"


def test_inputs_file_merged_with_pairs_pairs_win(cli_invoke, flows_file, tmp_path):
    (tmp_path / "inputs.json").write_text(json.dumps({"text": "from file", "count": 2, "tags": ["f"]}))
    result = cli_invoke(
        "run", _echo_target(flows_file), "--json", "--inputs-file", "inputs.json", "-i", "count=7"
    )
    assert result.exit_code == 0, result.stderr
    echo = json.loads(result.stdout)["outputs"]["echo"]
    assert (echo["text"], echo["count"], echo["tags"]) == ("from file", 7, ["f"])


def test_inputs_file_from_stdin(flow):
    result = flow("run", ECHO, "--json", "--inputs-file", "-", input='{"text": "piped", "count": 4}')
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["outputs"]["echo"]["count"] == 4


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "expected a JSON object of inputs, got list"),
    ],
)
def test_bad_inputs_file_is_exit_2(cli_invoke, flows_file, tmp_path, content, message):
    (tmp_path / "bad.json").write_text(content)
    result = cli_invoke("run", _echo_target(flows_file), "--inputs-file", "bad.json")
    assert result.exit_code == 2
    assert message in result.stderr
    assert get_engine().store.list_runs() == []


def test_pair_without_equals_is_exit_2(cli_invoke, flows_file):
    result = cli_invoke("run", _echo_target(flows_file), "-i", "text")
    assert result.exit_code == 2
    assert "expected KEY=VALUE" in result.stderr


def test_unknown_input_name_is_refused_with_suggestion(cli_invoke, flows_file):
    result = cli_invoke("run", _echo_target(flows_file), "-i", "text=x", "-i", "cuont=2")
    assert result.exit_code == 2
    assert "has no input named 'cuont'" in result.stderr
    assert "Did you mean 'count'" in result.stderr
    assert get_engine().store.list_runs() == []


def test_flow_without_inputs_model_takes_text_pairs(cli_invoke, flows_file):
    result = cli_invoke("run", f"{flows_file}:NoInputsFlow", "--json", "-i", "a=1", "-i", "b=x")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["outputs"] == {"got": {"a": "1", "b": "x"}}


# -- validation --------------------------------------------------------------------------------
def test_validation_errors_name_each_field_exit_2_nothing_written(cli_invoke, flows_file):
    result = cli_invoke("run", _echo_target(flows_file), "-i", "count=-1", "-i", "mode=medium")
    assert result.exit_code == 2
    assert "invalid inputs for flow 'echo_flow'" in result.stderr
    assert "- text: Field required" in result.stderr
    assert "- count: Input should be greater than or equal to 0" in result.stderr
    assert "- mode: Input should be 'fast' or 'slow'" in result.stderr
    assert result.stdout == ""
    assert get_engine().store.list_runs() == []


def test_validation_error_in_subprocess_has_no_traceback_and_json_says_invalid(flow):
    result = flow("run", ECHO, "--json", "-i", "count=lots")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "- count: Input should be a valid integer" in result.stderr
    payload = result.json()
    assert payload["status"] == "invalid" and payload["run_id"] is None and payload["outputs"] is None
    assert "- text: Field required" in payload["error"]


# -- model -------------------------------------------------------------------------------------
def test_model_option_is_the_run_level_model(cli_invoke, flows_file):
    result = cli_invoke("run", f"{flows_file}:ModelFlow", "--json", "--model", "openai/gpt-test")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["outputs"] == {"model": "openai/gpt-test"}


def test_without_model_option_the_offline_model_is_used(cli_invoke, flows_file):
    result = cli_invoke("run", f"{flows_file}:ModelFlow", "--json")
    assert json.loads(result.stdout)["outputs"] == {"model": "offline/default"}
    assert "offline model" in result.stderr


# -- progress and reporting --------------------------------------------------------------------
def test_progress_on_stderr_and_progress_plugin_unregistered_after(cli_invoke, flows_file):
    registry: PluginRegistry = get_engine().plugins
    before = {name for name, _ in registry.pm.list_name_plugin()}
    result = cli_invoke("run", f"{flows_file}:FailingFlow")
    assert "→ echo (python) [1]" in result.stderr
    assert "✓ echo" in result.stderr
    assert "✗ boom failed: ValueError: the widget exploded" in result.stderr
    assert {name for name, _ in registry.pm.list_name_plugin()} == before
    assert not registry.has_impls("before_step")


def test_json_output_is_one_object_and_nothing_else(flow):
    result = flow("run", "flowsrc/cli_test_flows.py:PrintingFlow", "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)  # fails if anything else reached stdout
    assert (
        payload["status"] == "completed" and payload["outputs"] == {"ok": True} and payload["error"] is None
    )
    uuid.UUID(payload["run_id"])
    assert result.stdout.count("\n") == 1
    assert "chatty flow output on stdout" in result.stderr  # the flow's print went to stderr


@pytest.mark.slow
def test_end_to_end_offline_article_processing(flow, tmp_path):
    article = Path(__file__).resolve().parents[2] / "examples" / "flows" / "sample_article.txt"
    result = flow("run", "article_processing", "--json", "--input", f"article_text=@{article}")
    assert result.returncode == 0, result.stderr
    payload = result.json()
    assert payload["status"] == "completed"
    assert set(payload["outputs"]["summary"]) == {"title", "summary", "key_points"}
    assert payload["total_tokens"] > 0
    assert "✓ extract_content" in result.stderr and "✓ summarize" in result.stderr


# -- failures ----------------------------------------------------------------------------------
def test_failing_flow_exit_1_message_no_traceback(flow):
    result = flow("run", "flowsrc/cli_test_flows.py:FailingFlow")
    assert result.returncode == 1
    assert (
        "Error: flow 'failing_flow' failed at step 'boom' (the error is above)" in result.stderr
        and result.stderr.count("ValueError: the widget exploded") == 1
    )
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert "failed" in result.stderr and "flow show" in result.stderr


def test_failing_flow_json_and_run_recorded_as_failed(cli_invoke, flows_file):
    result = cli_invoke("run", f"{flows_file}:FailingFlow", "--json")
    assert result.exit_code == 1
    payload = json.loads(result.stdout)
    assert payload["status"] == "failed"
    assert payload["outputs"] is None
    assert payload["error"] == "ValueError: the widget exploded"
    record = get_engine().store.get_run(uuid.UUID(payload["run_id"]))
    assert record.status == "failed"
    assert record.error_message == "ValueError: the widget exploded"
    steps = get_engine().store.list_steps(record.id)
    assert [(s.step_name, s.status) for s in steps] == [("echo", "completed"), ("boom", "failed")]


def test_traceback_option_shows_the_traceback(flow):
    result = flow("run", "flowsrc/cli_test_flows.py:FailingFlow", "--traceback")
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert 'raise ValueError("the widget exploded")' in result.stderr


def test_usage_error_inside_the_run_is_exit_2_and_recorded(cli_invoke, flows_file):
    result = cli_invoke("run", f"{flows_file}:MisusedFlow", "--json")
    assert result.exit_code == 2
    payload = json.loads(result.stdout)
    assert payload["status"] == "failed"
    assert "prompt file 'nowhere.md' not found" in payload["error"]
    assert get_engine().store.get_run(uuid.UUID(payload["run_id"])).status == "failed"


def test_unknown_storage_scheme_is_exit_2_before_running(flow, flow_env):
    result = flow("run", ECHO, "-i", "text=x", env=flow_env(FLOW_ENGINE_DATABASE_URL="nosuch://x"))
    assert result.returncode == 2
    assert "no storage backend for URL scheme 'nosuch'" in result.stderr
    assert "→ echo" not in result.stderr


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_exits_130_and_records_the_run_as_cancelled(flow_env, tmp_path):
    proc = subprocess.Popen(
        [*flow_command(), "run", "flowsrc/cli_test_flows.py:SlowFlow", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=flow_env(PYTHONFAULTHANDLER="1"),
        cwd=tmp_path,
        # Ctrl-C as a terminal delivers it: an ignored SIGINT is inherited across exec, and a library
        # run earlier in this test process (Celery's) may have left it ignored here
        preexec_fn=_default_sigint,
    )
    try:
        assert proc.stderr is not None
        seen = []
        for line in proc.stderr:  # wait until the slow step is running
            seen.append(line)
            if line.startswith("→ nap"):
                break
        else:
            pytest.fail(f"the slow step never started: {''.join(seen)}")
        proc.send_signal(signal.SIGINT)
        try:
            stdout, rest = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:  # hung: show where (faulthandler dumps every thread on SIGABRT)
            proc.send_signal(signal.SIGABRT)
            _, dump = proc.communicate(timeout=10)
            pytest.fail(f"still running 30 s after SIGINT; its threads:\n{''.join(seen)}{dump}")
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = "".join(seen) + rest
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "run recorded as cancelled" in stderr
    payload = json.loads(stdout)
    assert payload["status"] == "cancelled"
    if database_is_shared():  # and the database says so too
        from flow_engine.engine import configure

        from .conftest import SUBPROCESS_DATABASE_URL

        store = configure(database_url=SUBPROCESS_DATABASE_URL.format(tmp=tmp_path)).store
        record = store.get_run(uuid.UUID(payload["run_id"]))
        assert record.status == "cancelled"
        assert [(s.step_name, s.status) for s in store.list_steps(record.id)] == [
            ("echo", "completed"),
            ("nap", "cancelled"),
        ]


@pytest.mark.skipif(not database_is_shared(), reason="subprocesses use memory://; needs the SQL backend")
def test_failed_run_is_readable_from_another_process(flow, tmp_path):
    from flow_engine.engine import configure

    from .conftest import SUBPROCESS_DATABASE_URL

    result = flow("run", "flowsrc/cli_test_flows.py:FailingFlow", "--json")
    assert result.returncode == 1
    run_id = uuid.UUID(result.json()["run_id"])
    engine = configure(database_url=SUBPROCESS_DATABASE_URL.format(tmp=tmp_path))
    record = engine.store.get_run(run_id)
    assert record is not None and record.status == "failed"
    assert record.error_message == "ValueError: the widget exploded"


def test_database_that_cannot_be_opened_is_one_line_without_the_password(cli_invoke, flows_file, engine):
    from flow_engine.engine import configure
    from flow_engine.plugin import StorageBackendInfo, hookimpl

    def refuse(url):
        raise OSError("connection refused for user app password=hunter22")

    class BrokenBackend:
        @hookimpl
        def register_storage_backends(self, register):
            register(StorageBackendInfo("broken", ("broken",), refuse))

    eng = configure(
        database_url="broken://app:hunter22@db.example:5432/runs", data_dir=engine.settings.data_dir
    )
    eng.plugins.register(BrokenBackend(), name="broken-backend")
    result = cli_invoke("run", f"{flows_file}:EchoFlow", "-i", "text=x")
    assert result.exit_code == 1
    assert (
        "Error: cannot open the database broken://app:***@db.example:5432/runs: OSError: connection refused"
        in result.stderr
    )
    assert "hunter22" not in result.stderr + result.stdout
    assert "→ echo" not in result.stderr


def test_db_option_chooses_the_database(flow, tmp_path):
    db = tmp_path / "chosen.db"
    result = flow("--db", f"sqlite:///{db}", "run", ECHO, "-i", "text=x", "--json")
    assert result.returncode == 0, result.stderr
    assert db.is_file()
    from flow_engine.engine import configure

    record = configure(database_url=f"sqlite:///{db}").store.get_run(uuid.UUID(result.json()["run_id"]))
    assert record is not None and record.status == "completed" and record.inputs["text"] == "x"


def test_child_flow_steps_are_indented_under_the_child(cli_invoke, flows_file):
    result = cli_invoke("run", f"{flows_file}:ParentFlow", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["outputs"] == {"child": "from parent"}
    lines = result.stderr.splitlines()
    assert "→ echo (python) [1]" in lines
    start = lines.index("↳ flow echo_flow")
    assert lines[start + 1] == "  → echo (python) [1/1]"
    assert lines[start + 2].startswith("  ✓ echo · ")


@pytest.mark.slow
@pytest.mark.skipif(not database_is_shared(), reason="subprocesses use memory://; needs the SQL backend")
def test_the_printed_flow_show_command_finds_the_run(flow):
    result = flow("run", "flowsrc/cli_test_flows.py:FailingFlow")
    assert result.returncode == 1
    command = next(line for line in result.stderr.splitlines() if "flow show " in line)
    run_id = command.split("flow show ", 1)[1].strip()
    shown = flow("show", run_id)
    assert shown.returncode == 0, shown.stderr
    assert run_id in shown.stdout and "failed" in shown.stdout
    assert "the widget exploded" in shown.stdout


def test_budget_options_reach_the_run(cli_invoke, flows_file):
    target = f"{flows_file}:BudgetFlow"
    result = cli_invoke("run", target, "--json", "--max-cost", "0.25", "--max-tokens", "500")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["outputs"] == {"max_cost": 0.25, "max_tokens": 500}
    default = cli_invoke("run", target, "--json")
    assert json.loads(default.stdout)["outputs"] == {"max_cost": None, "max_tokens": 999}  # the class's
    negative = cli_invoke("run", target, "--max-cost", "-1")
    assert negative.exit_code == 2


def test_token_budget_stops_an_llm_flow_and_fails_the_run(cli_invoke):
    article = Path(__file__).resolve().parents[2] / "examples" / "flows" / "sample_article.txt"
    result = cli_invoke(
        "run", "article_processing", "--json", "-i", f"article_text=@{article}", "--max-tokens", "10"
    )
    assert result.exit_code == 1, result.stderr
    payload = json.loads(result.stdout)
    assert payload["status"] == "failed" and payload["error"].startswith("BudgetExceeded")
    record = get_engine().store.get_run(uuid.UUID(payload["run_id"]))
    assert [s.step_name for s in get_engine().store.list_steps(record.id)] == ["extract_content"]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("x = 1\nresult = await thing()\n", "SyntaxError: 'await' outside function ({path}, line 2)"),
        ("import os\ndef broken(:\n    pass\n", "SyntaxError: invalid syntax ({path}, line 2)"),
        (
            "import os\nfrom nosuch_module_xyz import thing\n",
            "No module named 'nosuch_module_xyz' ({path}, line 2)",
        ),
        ("import os\nfrom os import no_such_name\n", "cannot import name 'no_such_name' from 'os'"),
    ],
)
def test_an_import_error_in_a_flow_file_points_at_that_file_only(flow, tmp_path, source, expected):
    path = tmp_path / "broken_flow_file.py"
    path.write_text(source, encoding="utf-8")
    result = flow("run", f"{path}:Flow")
    assert result.returncode == 2
    assert expected.format(path=path) in result.stderr
    assert f"({path}, line 2)" in result.stderr
    assert "flow_registry" not in result.stderr and "Traceback" not in result.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_records_the_run_as_cancelled_at_once_and_exits_143(flow_env, tmp_path):
    """What a container or process manager sends: the run is cancelled, not left running."""
    proc = subprocess.Popen(
        [*flow_command(), "run", "flowsrc/cli_test_flows.py:SlowFlow", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=flow_env(),
        cwd=tmp_path,
    )
    try:
        assert proc.stderr is not None
        seen = []
        for line in proc.stderr:  # wait until the slow step is running
            seen.append(line)
            if line.startswith("→ nap"):
                break
        else:
            pytest.fail(f"the slow step never started: {''.join(seen)}")
        proc.send_signal(signal.SIGTERM)
        stdout, rest = proc.communicate(timeout=30)  # the step sleeps 60 s: it must not be waited for
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = "".join(seen) + rest
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr
    assert "run recorded as cancelled" in stderr
    payload = json.loads(stdout)
    assert (payload["status"], payload["error"]) == ("cancelled", "terminated (SIGTERM)")
    from flow_engine.engine import configure

    from .conftest import SUBPROCESS_DATABASE_URL

    store = configure(database_url=SUBPROCESS_DATABASE_URL.format(tmp=tmp_path)).store
    record = store.get_run(uuid.UUID(payload["run_id"]))
    assert record.status == "cancelled" and "SIGTERM" in (record.error_message or "")
    assert [(s.step_name, s.status) for s in store.list_steps(record.id)] == [
        ("echo", "completed"),
        ("nap", "cancelled"),
    ]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_program_that_lets_sigterm_cancel_its_task_gets_the_run_recorded_cancelled(flow_env, tmp_path):
    """The pattern docs/durable-execution.md gives for a user's own program."""
    script = tmp_path / "program.py"
    script.write_text(
        "import asyncio, signal, sys\n"
        "from cli_test_flows import SlowFlow\n"
        "async def main():\n"
        "    task = asyncio.current_task()\n"
        "    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)\n"
        "    flow = SlowFlow()\n"
        "    try:\n"
        "        await flow.execute({})\n"
        "    finally:\n"
        "        print(flow.run_id, flush=True)\n"
        "asyncio.run(main())\n",
        encoding="utf-8",
    )
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=flow_env(),
        cwd=tmp_path,
    )
    from flow_engine.engine import configure

    from .conftest import SUBPROCESS_DATABASE_URL

    try:
        import time

        deadline = time.monotonic() + 60
        db = tmp_path / "flow.db"
        while time.monotonic() < deadline:  # wait until the slow step is recorded running
            if db.exists():
                store = configure(database_url=SUBPROCESS_DATABASE_URL.format(tmp=tmp_path)).store
                runs = store.list_runs()
                if runs and [s.step_name for s in store.list_steps(runs[0].id)] == ["echo", "nap"]:
                    break
            time.sleep(0.2)
        else:
            pytest.fail("the slow step never started")
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0 and "CancelledError" in stderr
    store = configure(database_url=SUBPROCESS_DATABASE_URL.format(tmp=tmp_path)).store
    record = store.get_run(uuid.UUID(stdout.strip()))
    assert record.status == "cancelled"
    assert [s.status for s in store.list_steps(record.id)] == ["completed", "cancelled"]


@pytest.mark.slow
def test_the_commands_a_run_suggests_name_the_database_given_with_db(flow, tmp_path):
    given = f"sqlite:///{tmp_path / 'given.db'}"
    ran = flow("--db", given, "run", "article_processing", "--input", "article_text=hi")
    assert ran.returncode == 0, ran.stderr
    suggested = next(line for line in ran.stderr.splitlines() if line.startswith("See it again with: "))
    command = suggested.removeprefix("See it again with: flow ").split()
    assert command[:3] == ["--db", given, "show"]
    again = flow(*command)  # as printed: it finds the run in the same database
    assert again.returncode == 0 and "article_processing" in again.stdout
    after = flow("run", "article_processing", "--input", "article_text=hi", "--db", given)
    assert f"See it again with: flow --db {given} show " in after.stderr  # --db after the command too
    from_environment = flow("run", "article_processing", "--input", "article_text=hi")
    assert "See it again with: flow show " in from_environment.stderr  # the variable still applies


def test_a_password_in_the_given_database_is_not_repeated_in_a_suggestion(monkeypatch):
    from flow_engine.cli.format import flow_command
    from flow_engine.cli.options import use_database

    monkeypatch.setenv("FLOW_ENGINE_DATABASE_URL", "memory://")
    use_database("postgresql+psycopg://me:s3cret@db:5432/runs")
    try:
        assert flow_command("show 3f2a") == "flow --db 'postgresql+psycopg://me:***@db:5432/runs' show 3f2a"
    finally:
        use_database(None, given=False)
    assert flow_command("show 3f2a") == "flow show 3f2a"


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        ("tapes", "--record tapes: is a folder, not a file; name the file to write"),
        ("notes.txt/run.json", "--record notes.txt/run.json: notes.txt is not a folder"),
    ],
)
def test_a_record_path_that_cannot_be_written_is_refused_before_the_run(
    cli_invoke, flows_file, tmp_path, record, problem
):
    (tmp_path / "tapes").mkdir()
    (tmp_path / "notes.txt").write_text("a file, not a folder", encoding="utf-8")
    result = cli_invoke("run", _echo_target(flows_file), "-i", "text=hi", "--record", record, "--json")
    assert (result.exit_code, result.stderr) == (2, f"Error: {problem}\n")
    assert json.loads(result.stdout)["run_id"] is None
    get_engine().store  # noqa: B018 - an empty database, if none was made
    assert get_engine().store.list_runs(limit=10) == []  # refused before any run was written


def test_a_record_path_in_folders_yet_to_be_made_is_written_at_the_end(cli_invoke, flows_file, tmp_path):
    result = cli_invoke("run", _echo_target(flows_file), "-i", "text=hi", "--record", "new/tapes/run.json")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "new" / "tapes" / "run.json").read_text())["interactions"] == []
