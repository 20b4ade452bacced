"""``flow db path|upgrade|current|downgrade``: where the database is and its Alembic migrations, on the
default SQLite file, any URL given with --db (before or after the subcommand), and PostgreSQL; errors
are one line with exit code 2. ``flow db`` is the SQL plugin's command (``register_commands``)."""

from __future__ import annotations

import sqlite3

import pytest

from flow_engine.plugins.sql import schema
from tests.cli import conftest as cli_fixtures

# the `flow` command fixtures of tests/cli
cli_invoke, flow, flow_env = cli_fixtures.cli_invoke, cli_fixtures.flow, cli_fixtures.flow_env

HEAD = schema.HEAD


def sqlite_tables(path) -> set[str]:  # type: ignore[no-untyped-def]
    with sqlite3.connect(path) as conn:
        return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_path_prints_the_sqlite_file(cli_invoke, tmp_path):
    result = cli_invoke("db", "path")
    assert result.exit_code == 0 and result.stdout == f"{tmp_path / 'flow.db'}\n"


@pytest.mark.slow
def test_path_of_the_default_database_is_in_the_data_folder(flow, flow_env, tmp_path):
    env = flow_env()
    del env["FLOW_ENGINE_DATABASE_URL"]
    result = flow("db", "path", env=env)
    assert result.returncode == 0 and result.stdout == f"{tmp_path / 'data' / 'flow_engine.db'}\n"
    relative = flow("--db", "sqlite:///rel/runs.db", "db", "path")
    assert relative.stdout == f"{tmp_path / 'rel' / 'runs.db'}\n"  # resolved against the working folder
    server = flow("--db", "postgresql+psycopg://me:hunter2@db.example:5432/runs", "db", "path")
    assert server.returncode == 0 and server.stdout == "postgresql+psycopg://me:***@db.example:5432/runs\n"


def test_upgrade_current_downgrade(cli_invoke, tmp_path):
    db = tmp_path / "flow.db"
    assert cli_invoke("db", "current").stdout == "no flow-engine tables (base)\n"
    assert not db.exists()  # asking did not create it
    upgraded = cli_invoke("db", "upgrade")
    assert upgraded.exit_code == 0
    assert upgraded.stdout == f"Upgraded sqlite:///{db} from base to {HEAD} (head).\n"
    assert {"flow_runs", "flow_step_runs", "llm_requests"} <= sqlite_tables(db)
    assert cli_invoke("db", "current").stdout == f"{HEAD} (head)\n"
    assert cli_invoke("db", "upgrade").stdout == f"sqlite:///{db} is already at {HEAD} (head).\n"

    refused = cli_invoke("db", "downgrade", "base", input="n\n")
    assert refused.exit_code != 0 and "Data in removed tables or columns is lost" in refused.output
    assert cli_invoke("db", "current").stdout == f"{HEAD} (head)\n"
    downgraded = cli_invoke("db", "downgrade", "base", input="y\n")
    assert downgraded.exit_code == 0
    assert f"Downgraded sqlite:///{db} from {HEAD} to base (no flow-engine tables)." in downgraded.stdout
    assert sqlite_tables(db) == {"alembic_version"}
    assert cli_invoke("db", "upgrade", HEAD).exit_code == 0
    assert cli_invoke("db", "current").stdout == f"{HEAD} (head)\n"


@pytest.mark.slow
def test_errors_are_one_line_with_exit_code_2(flow):
    assert flow("db", "upgrade").returncode == 0  # downgrade refuses a SQLite file that does not exist
    unknown = flow("db", "downgrade", "nonsense", "--yes")
    assert unknown.returncode == 2
    assert unknown.stderr == "Error: downgrade failed: Can't locate revision identified by 'nonsense'\n"
    memory = flow("--db", "memory://", "db", "upgrade")
    assert memory.returncode == 2 and memory.stderr.startswith(
        "Error: `flow db upgrade` works on SQL databases"
    )
    no_scheme = flow("--db", "just-a-file.db", "db", "current")
    assert no_scheme.returncode == 2 and "has no scheme" in no_scheme.stderr
    unreachable = flow("--db", "postgresql+psycopg://u:pw@127.0.0.1:1/db?connect_timeout=2", "db", "current")
    assert unreachable.returncode == 2 and unreachable.stderr.startswith("Error: cannot connect to database")
    assert ":pw@" not in unreachable.stderr and "Traceback" not in unreachable.stderr


@pytest.mark.slow
def test_a_downgraded_sqlite_database_is_upgraded_again_on_first_use(flow, tmp_path):
    assert flow("db", "upgrade").returncode == 0
    assert flow("db", "downgrade", "base", "-y").returncode == 0
    listed = flow("runs")
    assert listed.returncode == 0 and listed.stdout.startswith("No runs recorded yet")
    assert flow("db", "current").stdout == f"{HEAD} (head)\n"


def test_db_option_after_the_subcommand(flow, tmp_path):
    other = tmp_path / "other.db"
    upgraded = flow("db", "upgrade", "--db", f"sqlite:///{other}")
    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout.startswith(f"Upgraded sqlite:///{other} from base")
    assert {"flow_runs", "flow_step_runs"} <= sqlite_tables(other)
    assert flow("runs", "--db", f"sqlite:///{other}").stdout.startswith("No runs recorded yet")
    assert flow("db", "path", "--db", f"sqlite:///{other}").stdout == f"{other}\n"


def test_disabling_the_sql_plugin_removes_flow_db(flow, flow_env):
    gone = flow("db", "path", env=flow_env(FLOW_ENGINE_DISABLE_PLUGINS="sql"))
    assert gone.returncode == 2 and "No such command 'db'" in gone.stderr


@pytest.mark.slow
@pytest.mark.postgres
def test_postgresql_is_migrated_only_by_flow_db_upgrade(flow):
    from tests.plugins.sql.databases import pg_schema

    with pg_schema() as url:
        assert flow("--db", url, "db", "current").stdout == "no flow-engine tables (base)\n"
        refused = flow("--db", url, "runs")
        assert refused.returncode == 2 and "`flow db upgrade`" in refused.stderr
        upgraded = flow("--db", url, "db", "upgrade")
        assert upgraded.returncode == 0 and f"from base to {HEAD} (head)" in upgraded.stdout
        listed = flow("--db", url, "runs", "--json")
        assert listed.returncode == 0 and listed.json() == []
        down = flow("--db", url, "db", "downgrade", "base", "--yes")
        assert down.returncode == 0 and flow("--db", url, "db", "current").stdout.startswith("no flow-engine")


async def test_downgrade_and_upgrade_keep_recorded_runs(cli_invoke, tmp_path):
    from .test_migrate import FIRST, record_runs, stored_ids

    url = f"sqlite:///{tmp_path / 'flow.db'}"  # the test engine's database, which `flow db` works on
    recorded = await record_runs(url)

    down = cli_invoke("db", "downgrade", FIRST, "--yes")
    assert down.exit_code == 0, down.output
    assert f"Downgraded {url} from {HEAD} to {FIRST}." in down.stdout
    assert stored_ids(url) == recorded
    up = cli_invoke("db", "upgrade")
    assert up.exit_code == 0 and f"from {FIRST} to {HEAD} (head)" in up.stdout
    assert stored_ids(url) == recorded


@pytest.mark.parametrize("revision", ["base", "0001_initial"])
def test_downgrade_of_a_missing_sqlite_file_is_refused_not_created(cli_invoke, tmp_path, revision):
    missing = tmp_path / "typo.db"
    result = cli_invoke("--db", f"sqlite:///{missing}", "db", "downgrade", revision, "--yes")
    assert result.exit_code == 2
    assert f"no database at {missing}" in result.output
    assert not missing.exists()
    asked = cli_invoke("--db", f"sqlite:///{missing}", "db", "downgrade", revision)  # refused before asking
    assert asked.exit_code == 2 and "Downgrade" not in asked.output and not missing.exists()


BAD_URLS = [
    ("postgresql://me:hunter2@db.example:notaport/runs", "the port 'notaport' is not a number"),
    ("postgresql://[::1:1/db", "the IPv6 address '[::1:1' has no closing ']'"),
    ("postgresql://me:hunter2@db.example:70000/runs", "port 70000 is not a port number (1-65535)"),
]


@pytest.mark.parametrize(("url", "problem"), BAD_URLS)
@pytest.mark.parametrize("command", [["db", "upgrade"], ["db", "current"], ["db", "downgrade", "base"]])
def test_an_unreadable_url_is_refused_naming_it_and_the_problem(cli_invoke, url, problem, command):
    result = cli_invoke("--db", url, *command)
    assert result.exit_code == 2
    assert f"invalid database URL '{url.replace(':hunter2@', ':***@')}': {problem}" in result.output
    assert "hunter2" not in result.output and "Downgrade" not in result.output


@pytest.mark.slow
@pytest.mark.parametrize(("url", "problem"), BAD_URLS[:2])
@pytest.mark.parametrize(
    "command", [["runs"], ["db", "upgrade"], ["run", "article_processing", "--input", "article_text=hi"]]
)
def test_an_unreadable_url_is_exit_2_without_a_traceback(flow, flow_env, url, problem, command):
    for given in (["--db", url], []):  # on the command line, or in FLOW_ENGINE_DATABASE_URL
        env = flow_env() if given else flow_env(FLOW_ENGINE_DATABASE_URL=url)
        done = flow(*given, *command, env=env)
        assert done.returncode == 2, done.stderr
        shown = url.replace(":hunter2@", ":***@")
        assert done.stderr == f"Error: invalid database URL '{shown}': {problem}\n"


@pytest.mark.slow
def test_a_sqlite_file_whose_folder_is_a_file_is_exit_2(flow, tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    url = f"sqlite:///{tmp_path / 'afile' / 'sub' / 'runs.db'}"
    for command in (["run", "article_processing", "--input", "article_text=hi"], ["db", "upgrade"]):
        done = flow("--db", url, *command)
        assert done.returncode == 2, done.stderr
        assert (
            done.stderr
            == f"Error: cannot open database {url}: {tmp_path / 'afile'} is a file, not a folder\n"
        )
