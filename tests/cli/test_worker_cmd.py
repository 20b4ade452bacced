"""``flow worker`` refusing to start, as real subprocesses: each configuration problem is one line and
exit 2, never a traceback and never a worker that waits forever. (Workers doing work:
tests/plugins/celery.)"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.fake_openai_server import free_port

REDIS_SOMEWHERE = "redis://127.0.0.1:6379/0"  # never reached: the database is checked first


def refused(done, *fragments: str) -> None:  # type: ignore[no-untyped-def]
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    for fragment in fragments:
        assert fragment in done.stderr


def test_without_a_broker_url(flow):
    refused(flow("worker", timeout=60), "the celery executor needs a broker: set FLOW_ENGINE_BROKER_URL")


def test_with_a_broker_nobody_listens_on(flow, flow_env):
    broker = f"redis://127.0.0.1:{free_port()}/0"
    done = flow("worker", env=flow_env(FLOW_ENGINE_BROKER_URL=broker), timeout=60)
    refused(done, f"cannot reach the Celery broker {broker}")


def test_with_a_database_it_cannot_reach(flow, flow_env):
    db = f"postgresql+psycopg://flow:secret@127.0.0.1:{free_port()}/nowhere"
    done = flow("--db", db, "worker", env=flow_env(FLOW_ENGINE_BROKER_URL=REDIS_SOMEWHERE), timeout=60)
    refused(done, "cannot open database postgresql+psycopg://flow:***@127.0.0.1")
    assert "secret" not in done.stderr


@pytest.mark.postgres
def test_with_a_database_behind_the_current_schema(flow, flow_env):
    from tests.plugins.sql.databases import pg_schema

    with pg_schema() as db:  # an empty schema: no tables yet
        done = flow("--db", db, "worker", env=flow_env(FLOW_ENGINE_BROKER_URL=REDIS_SOMEWHERE), timeout=60)
    refused(done, "has no flow-engine tables yet; create them with `flow db upgrade`")


def test_with_a_database_of_this_process_only(flow, flow_env):
    done = flow("--db", "memory://", "worker", env=flow_env(FLOW_ENGINE_BROKER_URL=REDIS_SOMEWHERE))
    refused(done, "a worker needs a database the submitters share")


def test_of_an_executor_without_workers(flow):
    refused(flow("worker", "--executor", "local"), "executor 'local' runs a flow inside the process")


def test_help_lists_the_commands_and_imports_no_celery(flow):
    shown = flow("--help")
    assert "worker" in shown.stdout and "wait" in shown.stdout
    code = (
        "import sys\n"
        "from flow_engine.cli.main import main\n"
        "for argv in (['--help'], ['worker', '--help'], ['plugins', '--json']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('IMPORTED' if 'celery' in sys.modules else 'NOT IMPORTED', file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stderr.strip().endswith("NOT IMPORTED"), done.stderr
    assert "--concurrency" in done.stdout and "--queues" in done.stdout
