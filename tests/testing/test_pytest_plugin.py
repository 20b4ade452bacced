"""The pytest plugin as a user meets it: test files run by pytester, the plugin found via its entry point.

Inline runs share this process (see ``warmed_up`` in conftest.py for what that takes); one subprocess
run proves the ``pytest11`` entry point alone.
"""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["pytester"]

INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
addopts = -p no:cacheprovider
"""

FLOWS = """
from typing import Any

from pydantic import BaseModel

from flow_engine import BaseFlow, StructuredStep, UnstructuredStep


class Summary(BaseModel):
    title: str
    key_points: list[str]


class Extract(UnstructuredStep):
    step_name = "extract"
    model = "openai/gpt-4o-mini"  # pinned: a test must still never reach OpenAI

    class Inputs(BaseModel):
        prompt: str


class Summarize(StructuredStep):
    step_name = "summarize"
    Outputs = Summary

    class Inputs(BaseModel):
        prompt: str


class ArticleFlow(BaseFlow):
    flow_name = "user_article"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        facts = await Extract().execute({"prompt": f"Extract the facts of: {inputs['text']}"})
        summary = await Summarize().execute({"prompt": f"Summarize: {facts.output_content}"})
        return {"title": summary.output_content.title, "facts": facts.output_content}
"""


@pytest.fixture(autouse=True)
def _setup(warmed_up: None, pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(user_flows=FLOWS)


def test_a_users_test_file_using_the_fixtures_passes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_user="""
        import os

        from user_flows import ArticleFlow, Summary
        from flow_engine.testing import load_run


        async def test_scripted_article(scripted):
            scripted.respond("extract", "Rivers rise in spring.")
            scripted.respond("summarize", Summary(title="Spring rivers", key_points=["rise"]))
            flow = ArticleFlow()
            outputs = await flow.execute({"text": "a long article"})
            assert outputs == {"title": "Spring rivers", "facts": "Rivers rise in spring."}
            scripted.expect("summarize", contains="Rivers rise in spring.")
            run = load_run(flow.run_id)
            assert run.status == "completed"
            assert [s.step_key for s in run.steps] == ["extract", "summarize"]
            assert run.output("summarize") == {"title": "Spring rivers", "key_points": ["rise"]}
            assert len(run.requests_for("extract")) == 1


        async def test_isolated_engine_is_offline_and_in_tmp_path(isolated_engine, tmp_path):
            assert isolated_engine.settings.model == "offline/default"
            assert str(tmp_path) in isolated_engine.database_url
            assert "FLOW_ENGINE_MODEL" not in os.environ
            assert os.environ["FLOW_ENGINE_DATA_DIR"] == str(tmp_path / "data")


        async def test_offline_model_answers_pinned_steps(offline_model):
            flow = ArticleFlow()
            outputs = await flow.execute({"text": "offline"})
            assert outputs["title"] and outputs["facts"]
            assert {r.provider for r in load_run(flow).llm_requests} == {"offline"}
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=3)


def test_the_developers_environment_does_not_leak_in_or_get_lost(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOW_ENGINE_MODEL", "openai/gpt-4o")
    monkeypatch.setenv("FLOW_ENGINE_DATABASE_URL", "postgresql+psycopg://prod/db")
    pytester.makepyfile(
        test_env="""
        import os

        import pytest


        @pytest.fixture
        def flow_engine_settings():
            return {"max_retries": 7}


        def test_settings(isolated_engine):
            assert isolated_engine.settings.model == "offline/default"
            assert isolated_engine.settings.max_retries == 7
            assert isolated_engine.database_url.startswith("sqlite:///")
            assert "FLOW_ENGINE_DATABASE_URL" not in os.environ
        """
    )
    pytester.runpytest().assert_outcomes(passed=1)
    assert os.environ["FLOW_ENGINE_MODEL"] == "openai/gpt-4o"
    assert os.environ["FLOW_ENGINE_DATABASE_URL"] == "postgresql+psycopg://prod/db"


def test_a_wrong_expectation_fails_with_the_prompts_it_saw(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_wrong="""
        from user_flows import ArticleFlow, Summary


        async def test_expects_lakes(scripted):
            scripted.respond("extract", "Rivers rise in spring.")
            scripted.respond("summarize", Summary(title="t", key_points=[]))
            await ArticleFlow().execute({"text": "rivers"})
            scripted.expect("summarize", contains="lakes")
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*AssertionError: scripted.expect('summarize', contains='lakes'): "
            "no prompt of step 'summarize' matches",
            "*prompts step 'summarize' sent:",
            "*user: Summarize: Rivers rise in spring.",
        ]
    )


def test_a_step_that_was_not_scripted_fails_naming_the_step(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_unscripted="""
        from user_flows import ArticleFlow


        async def test_forgot_summarize(scripted):
            scripted.respond("extract", "Rivers rise in spring.")
            await ArticleFlow().execute({"text": "rivers"})
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*ScriptedAnswerMissing: no scripted answer for step 'summarize' (model 'offline/default', "
            "prompt 'Summarize: Rivers rise in spring.*'); queue one with scripted.respond('summarize', ...)*"
        ]
    )
    # the test's own error, not a failed-request error wrapping it
    assert "LLMRequestError" not in result.stdout.str() and "APIConnectionError" not in result.stdout.str()


def test_llm_cassette_records_with_the_option_then_replays(pytester: pytest.Pytester) -> None:
    test_file = """
        import pytest
        from user_flows import ArticleFlow
        from flow_engine.testing import load_run

        TEXT = "{text}"


        @pytest.mark.cassette("cassettes/article.json")
        async def test_article(llm_cassette, offline_model):
            flow = ArticleFlow()
            outputs = await flow.execute({{"text": TEXT}})
            rows = load_run(flow).llm_requests
            print("MODE", llm_cassette.mode, "TITLE", outputs["title"])
            if llm_cassette.replaying:
                assert {{r.request_params.get("replayed_from") for r in rows}} == {{"article.json"}}
                assert llm_cassette.unplayed == []
    """
    pytester.makepyfile(test_cassette=test_file.format(text="the recorded article"))
    missing = pytester.runpytest()
    missing.assert_outcomes(errors=1)
    missing.stdout.fnmatch_lines(["*CassetteError: no cassette '*article.json' to replay*"])

    recorded = pytester.runpytest("--flow-engine-record", "-s")
    recorded.assert_outcomes(passed=1)
    title = recorded.stdout.str().split("MODE record TITLE ", 1)[1].splitlines()[0]
    assert (pytester.path / "cassettes" / "article.json").is_file()

    replayed = pytester.runpytest("-s")
    replayed.assert_outcomes(passed=1)
    assert f"MODE replay TITLE {title}" in replayed.stdout.str()

    pytester.makepyfile(test_cassette=test_file.format(text="a different article"))
    changed = pytester.runpytest()
    changed.assert_outcomes(failed=1)
    changed.stdout.fnmatch_lines(
        [
            "*UnrecordedRequest: cassette 'article.json' has no recorded response for completion with "
            "model 'offline/openai/gpt-4o-mini' (step 'extract'), prompt 'Extract the facts of: a different*"
        ]
    )


def test_the_plugin_is_registered_through_its_entry_point(pytester: pytest.Pytester) -> None:
    """A fresh interpreter: pytest finds the fixtures by the ``pytest11`` entry point alone."""
    result = pytester.runpytest_subprocess("--fixtures")
    result.stdout.fnmatch_lines(
        [
            "*fixtures defined from flow_engine.testing.plugin*",
            "*isolated_engine*",
            "*A fresh engine for one test*",
        ]
    )
    assert "scripted" in result.stdout.str() and "llm_cassette" in result.stdout.str()
    result = pytester.runpytest_subprocess("--help")
    result.stdout.fnmatch_lines(["*--flow-engine-record*"])
