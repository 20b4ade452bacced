"""``flow run --record / --replay`` in real subprocesses, against the fake OpenAI server (a real TCP port).

The replays keep FLOW_ENGINE_API_BASE pointed at the server, so a request that slipped past the cassette
would show in the server's log, which must stay empty.
"""

from __future__ import annotations

import json

import pytest

from tests.fake_openai_server import API_KEY, Reply

pytestmark = pytest.mark.slow

SUMMARY = {"title": "Cats", "summary": "Cats sleep a lot.", "key_points": ["sleep", "purr"]}
ARTICLE = ["run", "article_processing", "--model", "openai/gpt-4o-mini", "--json"]


@pytest.fixture
def online_env(flow_env, fake_openai):
    return flow_env(FLOW_ENGINE_API_BASE=fake_openai.base_url, FLOW_ENGINE_API_KEY=API_KEY)


def test_record_then_replay_then_an_unrecorded_request(flow, flow_env, online_env, fake_openai, tmp_path):
    """One story (each ``flow run`` is a subprocess importing litellm: seconds apiece)."""
    fake_openai.script(
        Reply("Cats sleep sixteen hours a day.", usage=(40, 8)), Reply(json=SUMMARY, usage=(60, 20))
    )
    path = tmp_path / "article.json"
    recorded = flow(*ARTICLE, "-i", "article_text=Cats sleep.", "--record", str(path), env=online_env)
    assert recorded.returncode == 0, recorded.stderr
    assert len(fake_openai.chat_requests) == 2
    assert f"Recorded 2 LLM response(s) to {path}" in recorded.stderr
    first = recorded.json()
    data = json.loads(path.read_text())
    assert API_KEY not in path.read_text()
    assert [(i["step"], i["model"]) for i in data["interactions"]] == [
        ("extract_content", "openai/gpt-4o-mini"),
        ("summarize", "openai/gpt-4o-mini"),
    ]
    fake_openai.reset()

    # replayed with the server still configured: it must not be asked
    result = flow(*ARTICLE, "-i", "article_text=Cats sleep.", "--replay", str(path), env=online_env)
    assert result.returncode == 0, result.stderr
    assert fake_openai.requests == []
    replayed = result.json()
    assert replayed["outputs"]["summary"] == first["outputs"]["summary"] == SUMMARY
    assert replayed["outputs"]["extracted_content"] == "Cats sleep sixteen hours a day."
    assert replayed["total_tokens"] == first["total_tokens"] == 128
    assert replayed["total_cost"] == 0.0 and first["total_cost"] > 0  # replaying spends nothing
    assert f"Replayed 2 of 2 LLM response(s) from {path}" in result.stderr

    # no key, no server: still the same answers
    offline = flow(*ARTICLE, "-i", "article_text=Cats sleep.", "--replay", str(path), env=flow_env())
    assert offline.returncode == 0, offline.stderr
    assert offline.json()["outputs"]["summary"] == SUMMARY

    # another input: a request the cassette does not hold
    result = flow(*ARTICLE, "-i", "article_text=Dogs bark at night.", "--replay", str(path), env=online_env)
    assert result.returncode == 2
    assert fake_openai.requests == []
    assert (
        "UnrecordedRequest: cassette 'article.json' has no recorded response for completion with model "
        "'openai/gpt-4o-mini' (step 'extract_content'), prompt '" in result.stderr
    )
    assert "prompt differs here: '…" in result.stderr  # the template's start is the same: show the change
    assert (
        "Article: Dogs bark at night.' (recorded: '…asides and ads. Article: Cats sleep.')" in result.stderr
    )
    assert "Traceback" not in result.stderr
    report = result.json()
    assert report["status"] == "failed" and "UnrecordedRequest" in report["error"]


def test_cassette_option_mistakes_are_usage_errors(flow, online_env, tmp_path, fake_openai):
    missing = flow(*ARTICLE, "-i", "article_text=x", "--replay", str(tmp_path / "nope.json"), env=online_env)
    assert missing.returncode == 2
    assert "no cassette" in missing.stderr and "nope.json" in missing.stderr
    assert missing.json()["run_id"] is None  # refused before any run was written
    both = flow(*ARTICLE, "-i", "article_text=x", "--replay", "a.json", "--record", "b.json", env=online_env)
    assert both.returncode == 2 and "--record and --replay do not go together" in both.stderr
    assert fake_openai.requests == []
