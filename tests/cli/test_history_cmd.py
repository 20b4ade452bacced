"""``flow runs`` and ``flow show``: tables and JSON of what was recorded, id prefixes, filters, and
errors that are one line with exit code 2 (unknown or ambiguous id, bad status, bad user id)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from flow_engine import BaseFlow, BaseStep, UnstructuredStep
from flow_engine.plugin import ModelProviderInfo, RunRecord, hookimpl


class Add(BaseStep):
    step_name = "add"

    async def run(self, inputs: Any) -> int:
        return int(inputs["a"]) + int(inputs["b"])


class Boom(BaseStep):
    step_name = "boom"

    async def run(self, inputs: Any) -> None:
        raise ValueError("the [bold]widget[/bold] exploded\nsecond line")


class Ask(UnstructuredStep):
    step_name = "ask"


class Inner(BaseFlow):
    flow_name = "inner"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"sum": (await Add().execute({"a": inputs["a"], "b": 1})).output_content}


class Outer(BaseFlow):
    flow_name = "outer"
    total_steps = 3

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        await Add().execute({"a": 1, "b": 2})
        await Ask().execute({"prompt": "hello"}, model="offline/default")
        first = await Inner().execute({"a": 10})
        second = await Inner().execute({"a": 20})
        if inputs.get("fail"):
            await Boom().execute({})
        await Add().execute({"a": first["sum"], "b": second["sum"]})
        return {"first": first["sum"], "second": second["sum"]}


class _Priceless:
    @hookimpl
    def register_model_providers(self, register: Any) -> None:
        from flow_engine.plugins.offline import make_handler

        register(ModelProviderInfo("priceless", make_handler, free=False))


class Unpriced(BaseFlow):
    flow_name = "unpriced"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        await Ask().execute({"prompt": "what does this cost"}, model="priceless/x")
        return {}


@pytest.fixture
async def recorded(engine) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    user = uuid.uuid4()
    ok, failed = Outer(), Outer()
    await ok.execute({}, user_id=user)
    with pytest.raises(ValueError):
        await failed.execute({"fail": True})
    engine.plugins.register(_Priceless(), name="priceless")
    unpriced = Unpriced()
    await unpriced.execute({})
    return {"ok": ok.run_id, "failed": failed.run_id, "unpriced": unpriced.run_id, "user": user}


def rows_of(output: str) -> dict[str, str]:
    """Table rows by their first cell (the short run id, or the step number)."""
    rows = {}
    for line in output.splitlines():
        cells = line.split()
        if cells and "─" not in line:
            rows.setdefault(cells[0], line)
    return rows


def test_runs_lists_newest_first_as_a_table(cli_invoke, recorded):
    result = cli_invoke("runs")
    assert result.exit_code == 0, result.output
    header = next(line for line in result.stdout.splitlines() if line.split()[:1] == ["id"])
    assert header.split() == ["id", "flow", "status", "progress", "tokens", "cost", "duration", "started"]
    ids = [recorded[key].hex[:8] for key in ("unpriced", "failed", "ok")]
    order = [
        line.split()[0] for line in result.stdout.splitlines() if line.split()[:1] and line.split()[0] in ids
    ]
    assert order == ids  # newest first
    rows = rows_of(result.stdout)
    assert rows[ids[2]].split()[1:5] == ["outer", "completed", "3/3", "100%"]
    assert rows[ids[2]].split()[6] == "$0"
    assert rows[ids[1]].split()[1:5] == ["outer", "failed", "2/3", "67%"]
    assert f"inner (child of {ids[2]})" in result.stdout and f"inner (child of {ids[1]})" in result.stdout


def test_unknown_cost_is_never_shown_as_zero(cli_invoke, recorded):
    result = cli_invoke("runs", "--flow", "unpriced")
    row = rows_of(result.stdout)[recorded["unpriced"].hex[:8]]
    assert "unknown" in row.split() and "$0" not in row
    assert "some LLM calls used a model without a known price" in result.stdout
    shown = cli_invoke("show", recorded["unpriced"].hex[:8]).stdout
    assert "unknown (1 call(s) without a known price)" in shown
    step_row = rows_of(shown)["1"]
    assert step_row.split()[1] == "ask" and "unknown" in step_row.split()


def test_unknown_cost_is_null_in_every_json_output(cli_invoke, recorded):
    """`flow run --json`, `flow runs --json` and `flow show --json` agree: an unpriced total is null."""
    ran = cli_invoke("run", f"{__name__}:Unpriced", "--json")
    assert ran.exit_code == 0, ran.output
    payload = json.loads(ran.stdout)
    listed = {r["id"]: r for r in json.loads(cli_invoke("runs", "--json").stdout)}
    shown = json.loads(cli_invoke("show", payload["run_id"], "--json").stdout)["run"]
    for view in (payload, listed[payload["run_id"]], shown, listed[str(recorded["unpriced"])]):
        assert (view["total_cost"], view["priced_cost"], view["unpriced_calls"]) == (None, 0.0, 1), view
    priced = listed[str(recorded["ok"])]
    assert priced["total_cost"] == priced["priced_cost"] == 0.0 and priced["unpriced_calls"] == 0


def test_runs_json_and_filters(cli_invoke, recorded):
    every = json.loads(cli_invoke("runs", "--json").stdout)
    assert {r["flow_name"] for r in every} == {"outer", "inner", "unpriced"} and len(every) == 7
    assert [r["id"] for r in json.loads(cli_invoke("runs", "--json", "--limit", "1").stdout)] == [
        str(recorded["unpriced"])
    ]
    failed = json.loads(cli_invoke("runs", "--json", "--status", "FAILED").stdout)
    assert [r["id"] for r in failed] == [str(recorded["failed"])]
    assert failed[0]["error_message"].startswith("ValueError: the [bold]widget")
    mine = json.loads(cli_invoke("runs", "--json", "--user", str(recorded["user"])).stdout)
    assert {r["id"] for r in mine} >= {str(recorded["ok"])} and {r["flow_name"] for r in mine} == {
        "outer",
        "inner",
    }
    inner = json.loads(cli_invoke("runs", "--json", "--flow", "inner", "--status", "completed").stdout)
    assert len(inner) == 4 and {r["parent_run_id"] for r in inner} == {
        str(recorded["ok"]),
        str(recorded["failed"]),
    }


def test_show_a_run_with_its_steps_and_child_runs(cli_invoke, recorded):
    result = cli_invoke("show", recorded["ok"].hex[:6])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert str(recorded["ok"]) in out and "outer" in out and "completed" in out
    assert str(recorded["user"]) in out and "3/3 100%" in out
    assert '"first": 11' in out and '"second": 21' in out  # outputs
    assert "inputs" in out and "error" not in out.split("steps")[0]
    for step in ("add", "ask", "python", "unstructured_llm"):
        assert step in out
    tree = out.split("child runs", 1)[1]
    assert tree.index("inner") < tree.index("inner#2")  # child runs, in order, beneath their parent
    assert "1. add" in tree


def test_show_a_failed_run_shows_the_error_on_the_run_and_the_step(cli_invoke, recorded):
    out = cli_invoke("show", str(recorded["failed"])).stdout
    assert "ValueError: the [bold]widget[/bold] exploded" in out  # escaped, not rich markup
    step_row = rows_of(out.split("steps", 1)[1])["3"]
    assert step_row.split()[1:4] == ["boom", "python", "failed"]
    assert "failed" in step_row and "ValueError: the [bold]widget[/bold] exploded" in step_row
    assert "second line" not in step_row  # first line only in the table


def test_show_json(cli_invoke, recorded):
    data = json.loads(cli_invoke("show", "--json", recorded["ok"].hex[:10]).stdout)
    assert data["run"]["id"] == str(recorded["ok"]) and data["run"]["status"] == "completed"
    assert [s["step_key"] for s in data["steps"]] == ["add", "ask", "add#2"]
    assert [r["model"] for r in data["llm_requests"]] == ["offline/default"]
    assert [c["run"]["run_key"] for c in data["children"]] == ["inner", "inner#2"]
    assert [s["step_key"] for s in data["children"][0]["steps"]] == ["add"]
    assert data["children"][0]["children"] == []


async def test_run_id_errors_exit_2_with_one_line(cli_invoke, engine):
    for run_id in ("abcd0000-0000-4000-8000-000000000001", "abce0000-0000-4000-8000-000000000002"):
        await engine.store.create_run(RunRecord(id=uuid.UUID(run_id), flow_name="f", status="running"))
    cases = {
        "abc": "run id prefix 'abc' is ambiguous; give more characters",
        "ffff": "no run with id starting 'ffff'",
        "not-a-run!": "'not-a-run!' is not a run id or a prefix of one",
        str(uuid.UUID(int=7)): f"no run with id {uuid.UUID(int=7)}",
    }
    for given, message in cases.items():
        result = cli_invoke("show", given)
        assert result.exit_code == 2, (given, result.output)
        assert result.stderr.strip() == f"Error: {message}" + (
            "; `flow runs` lists the recorded runs" if message.startswith("no run") else ""
        )
    assert cli_invoke("show", "abcd").exit_code == 0


def test_bad_options_exit_2(cli_invoke, engine):
    engine.store  # noqa: B018 - an existing, empty database (reading commands never create one)
    bad_status = cli_invoke("runs", "--status", "exploded")
    assert bad_status.exit_code == 2 and "Invalid value for '--status'" in bad_status.stderr
    bad_user = cli_invoke("runs", "--user", "bob")
    assert bad_user.exit_code == 2 and "--user 'bob' is not a user id" in bad_user.stderr
    assert cli_invoke("runs", "--limit", "0").exit_code == 2


@pytest.mark.slow
@pytest.mark.parametrize(
    "command",
    [
        ["runs"],
        ["runs", "--json"],
        ["show", "abcd"],
        ["wait", "abcd"],
        ["resume", "abcd"],
        ["cancel", "abcd"],
        ["recover"],
        ["cache", "stats"],
        ["cache", "clear"],
        ["batch", "--resume", "abcd"],
        ["fork", "abcd", "--from", "x"],
        ["respond", "abcd", "approval", "--input", "ok=true"],
    ],
)
def test_reading_commands_never_create_a_database(flow, tmp_path, command):
    missing = tmp_path / "typo" / "deeper" / "x.db"
    for args in (["--db", f"sqlite:///{missing}", *command], [*command, "--db", f"sqlite:///{missing}"]):
        result = flow(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr == (
            f"Error: no database at {missing}: nothing has been recorded there (check --db or "
            "FLOW_ENGINE_DATABASE_URL; `flow db path` prints the default)\n"
        )
        assert result.stdout == ""
        assert not (tmp_path / "typo").exists()


def test_nothing_recorded_yet(cli_invoke, tmp_path):
    assert cli_invoke("runs").exit_code == 2  # no database file yet: not created by reading it
    assert not (tmp_path / "flow.db").exists()
    from flow_engine.engine import get_engine

    get_engine().store  # noqa: B018 - a writing command creates it
    empty = cli_invoke("runs")
    assert (
        empty.exit_code == 0
        and empty.stdout.strip() == f"No runs recorded yet in sqlite:///{tmp_path / 'flow.db'}."
    )
    assert cli_invoke("runs", "--flow", "x").stdout.strip() == "No runs match."
    assert json.loads(cli_invoke("runs", "--json").stdout) == []


@pytest.mark.slow
async def test_in_a_real_process_with_no_traceback(flow, engine, recorded):
    shown = flow("show", recorded["ok"].hex[:8], "--json")
    assert shown.returncode == 0, shown.stderr
    assert shown.json()["run"]["id"] == str(recorded["ok"])
    missing = flow("show", "0000")
    assert missing.returncode == 2 and missing.stderr == (
        "Error: no run with id starting '0000'; `flow runs` lists the recorded runs\n"
    )
    listed = flow("runs", "--status", "failed")
    assert listed.returncode == 0 and recorded["failed"].hex[:8] in listed.stdout


@pytest.mark.postgres
def test_a_server_database_behind_head_is_refused_naming_the_upgrade_command(flow, tmp_path):
    from tests.plugins.sql.databases import pg_schema

    with pg_schema() as url:
        result = flow("--db", url, "runs")
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert "has no flow-engine tables yet; create them with `flow db upgrade`" in result.stderr


async def test_a_running_run_whose_heartbeat_stopped_is_shown_as_crashed(cli_invoke, engine):
    from datetime import timedelta

    from flow_engine.storage import utcnow

    stale = RunRecord(flow_name="stuck", status="running", started_at=utcnow() - timedelta(hours=1))
    stale.last_heartbeat = utcnow() - timedelta(hours=1)
    live = RunRecord(flow_name="busy", status="running", started_at=utcnow(), last_heartbeat=utcnow())
    for record in (stale, live):
        await engine.store.create_run(record)
    rows = rows_of(cli_invoke("runs").stdout)
    assert rows[stale.id.hex[:8]].split()[1:3] == ["stuck", "crashed"]
    assert rows[live.id.hex[:8]].split()[1:3] == ["busy", "running"]
    assert "…" in rows[live.id.hex[:8]]  # still running: the time so far


class Keep(BaseStep):
    step_name = "keep"

    async def run(self, inputs: Any) -> int:
        return len(inputs["text"])


class Big(BaseFlow):
    flow_name = "big"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        length = (await Keep().execute({"text": inputs["text"]})).output_content
        return {"length": length, "tail": inputs["text"][-3000:], "many": list(range(500))}


@pytest.mark.slow
async def test_show_of_a_20_mb_input_prints_a_bounded_view_and_full_or_json_shows_all(flow, engine):
    text = "word " * 4_000_000  # 20 MB
    big = Big()
    await big.execute({"text": text})
    short = big.run_id.hex[:8]
    shown = flow("show", short)
    assert shown.returncode == 0, shown.stderr
    assert len(shown.stdout) < 30_000  # was the whole 20 MB, through rich: 88 s
    assert "19,998,000 more characters; --full shows all" in shown.stdout
    assert "450 more items; --full shows all" in shown.stdout
    assert "keep" in shown.stdout  # the steps table is still there
    whole = flow("show", short, "--json")
    assert whole.json()["run"]["inputs"]["text"] == text  # the JSON output stays whole
    full = flow("show", short, "--full")
    assert full.returncode == 0 and text in full.stdout and len(full.stdout) > 20_000_000


def test_every_command_and_group_accepts_db_after_its_name():
    import click

    from flow_engine.cli.main import cli

    context = click.Context(cli)

    def walk(command: click.Command, path: str) -> Any:
        yield path, command
        if isinstance(command, click.Group):
            for name in command.list_commands(context):
                yield from walk(command.get_command(context, name), f"{path} {name}")

    without = [
        path for path, command in walk(cli, "flow") if not any("--db" in p.opts for p in command.params)
    ]
    assert without == []
