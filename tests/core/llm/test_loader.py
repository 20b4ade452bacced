"""litellm is imported lazily, without network access and without banners (checked in fresh processes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("FLOW_ENGINE_", "LITELLM_"))}
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=environ,
        cwd=ROOT,
        timeout=120,
    )


def test_import_flow_engine_and_its_llm_modules_does_not_import_litellm(tmp_path):
    result = run_python(
        """
        import json, sys
        import flow_engine
        import flow_engine.llm, flow_engine.llm.structured, flow_engine.llm_step
        from flow_engine.plugins import offline, unstructured, structured, image
        from flow_engine import configure
        engine = configure(database_url="memory://")
        engine.plugins.step_types(); engine.plugins.model_providers()
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("litellm", "openai"))))
        """,
        FLOW_ENGINE_DATA_DIR=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


NETWORK_GUARD = """
import json, socket, sys
attempts = []
def deny(name):
    def guard(*args, **kwargs):
        attempts.append([name, repr(args)[:200]])
        raise OSError(f"network access attempted: {name}")
    return guard
socket.socket.connect = deny("connect")
socket.socket.connect_ex = deny("connect_ex")
socket.create_connection = deny("create_connection")
socket.getaddrinfo = deny("getaddrinfo")
"""


@pytest.mark.slow
def test_loading_litellm_makes_no_network_call_and_prints_nothing(tmp_path):
    result = run_python(
        NETWORK_GUARD
        + """
import asyncio, os, time
from flow_engine import configure
from flow_engine.llm.loader import load_litellm
from flow_engine.llm import complete
from flow_engine.llm.calls import LLMRequestError

configure(database_url="memory://", max_retries=0)
litellm = load_litellm()
assert load_litellm() is litellm

async def main():
    call = await complete([{"role": "user", "content": "hi"}], model="offline/x")
    assert call.text.startswith("[offline:x]"), call.text
    try:  # an error inside litellm: no "Give Feedback / Get Help" banner
        await complete([{"role": "user", "content": "hi"}], model="no-such-provider-model-xyz")
    except LLMRequestError as exc:
        return str(exc)

error = asyncio.run(main())
time.sleep(0.3)  # a background price-map fetch would have started by now
print("RESULT " + json.dumps({
    "attempts": attempts,
    "cost_map_env": os.environ.get("LITELLM_LOCAL_MODEL_COST_MAP"),
    "litellm_log": os.environ.get("LITELLM_LOG", "<unset>"),
    "suppress": litellm.suppress_debug_info,
    "priced": "gpt-4o-mini" in litellm.model_cost,
    "error": error,
}))
""",
        FLOW_ENGINE_DATA_DIR=str(tmp_path),
        LITELLM_LOG="",  # set but empty: litellm's own import would crash on it
    )
    assert result.returncode == 0, result.stderr
    out_lines = result.stdout.splitlines()
    assert len(out_lines) == 1 and out_lines[0].startswith("RESULT "), result.stdout  # no banner on stdout
    report = json.loads(out_lines[0].removeprefix("RESULT "))
    assert report["attempts"] == []
    assert report["cost_map_env"] == "True"
    assert report["litellm_log"] == "<unset>"
    assert report["suppress"] is True
    assert report["priced"]  # the bundled price map is there
    assert "not retried" in report["error"]
    for banner in ("Give Feedback", "Get Help", "LiteLLM.Info"):
        assert banner not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_prepare_environment_respects_user_choices(monkeypatch):
    from flow_engine.llm.loader import prepare_environment

    monkeypatch.delenv("LITELLM_LOCAL_MODEL_COST_MAP", raising=False)
    monkeypatch.setenv("LITELLM_OFFLINE_MODE", "false")
    monkeypatch.setenv("LITELLM_LOG", "")
    prepare_environment()
    assert os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
    assert os.environ["LITELLM_OFFLINE_MODE"] == "false"  # the user's own setting is left alone
    assert "LITELLM_LOG" not in os.environ  # set but empty, it would crash litellm's import


@pytest.mark.slow
@pytest.mark.parametrize("setting", ["true", "false"])
def test_litellm_import_time_objects_are_frozen_out_of_the_garbage_collector(tmp_path, setting):
    result = run_python(
        """
        import gc, json
        from flow_engine import configure
        from flow_engine.llm.loader import load_litellm
        configure(database_url="memory://")
        before = gc.get_freeze_count()
        load_litellm()
        print(json.dumps([before, gc.get_freeze_count(), len(gc.get_objects())]))
        """,
        FLOW_ENGINE_DATA_DIR=str(tmp_path),
        FLOW_ENGINE_GC_FREEZE=setting,
    )
    assert result.returncode == 0, result.stderr
    before, frozen, tracked = json.loads(result.stdout)  # (3.12 starts with a few hundred frozen)
    if setting == "true":  # litellm's modules and price map: out of every later collection's way
        assert frozen - before > 100_000 and tracked < frozen / 10
    else:
        assert frozen == before and tracked > 100_000
