"""docs/testing.md's examples are real: its files run with pytester and pass, its cassette is recorded from
the fake OpenAI server and replayed without it, and the failure messages it quotes are the ones printed.

A fenced block whose first line is ``# <file name>`` is written to that file; the rest are snippets.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.fake_openai_server import API_KEY, Reply

pytest_plugins = ["pytester"]

DOC = Path(__file__).resolve().parents[2] / "docs" / "testing.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)
FILE_LINE = re.compile(r"^# ([\w./-]+\.(?:py|ini))\n")


def doc_blocks() -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(DOC.read_text(encoding="utf-8"))]


def doc_files() -> dict[str, str]:
    found = {}
    for _, body in doc_blocks():
        match = FILE_LINE.match(body)
        if match:
            found[match.group(1)] = body
    return found


def quoted(start: str) -> str:
    """The ``text`` block of the doc that starts with ``start``, on one line."""
    [body] = [body for lang, body in doc_blocks() if lang == "text" and body.startswith(start)]
    return one_line(body)


def one_line(text: str) -> str:
    return " ".join(text.split())


def error_lines(output: str) -> str:
    """pytest's ``E   ...`` lines of a failure, on one line (what the doc quotes)."""
    return one_line(" ".join(line[1:] for line in output.splitlines() if line.startswith("E ")))


FAILURES = """
import pytest

from my_flows import ArticleFlow, Summary


async def test_expect_lakes(scripted):
    scripted.respond("extract_facts", "Rivers rise in spring.")
    scripted.respond("summarize", Summary(title="t", key_points=[]))
    await ArticleFlow().execute({"article": "x"})
    scripted.expect("summarize", contains="lakes")


async def test_summarize_forgotten(scripted):
    scripted.respond("extract_facts", "Rivers rise in spring.")
    await ArticleFlow().execute({"article": "x"})


@pytest.mark.cassette("article.json")
async def test_another_article(llm_cassette):
    await ArticleFlow().execute({"article": "Dogs bark at night."})
"""


def test_the_documented_files_pass_and_the_cassette_replays(
    pytester: pytest.Pytester, warmed_up: None, fake_openai, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = doc_files()
    assert {"pytest.ini", "my_flows.py", "conftest.py", "test_article.py", "test_recorded.py"} <= set(files)
    for name, body in files.items():
        (pytester.path / name).write_text(body, encoding="utf-8")

    # recording: litellm reads the OpenAI base URL and key from the environment, as for a real key
    monkeypatch.setenv("OPENAI_API_BASE", fake_openai.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    fake_openai.script(
        Reply("Rivers rise in spring.\nBridges close."),
        Reply(json={"title": "Spring floods", "key_points": ["rivers rise", "bridges close"]}),
    )
    pytester.runpytest("--flow-engine-record", "test_recorded.py").assert_outcomes(passed=1)
    assert len(fake_openai.chat_requests) == 2
    tape = pytester.path / "cassettes" / "test_recorded" / "test_the_recorded_article.json"
    assert tape.is_file() and API_KEY not in tape.read_text()

    # every documented test passes, the recorded one replayed: no key, no request
    monkeypatch.delenv("OPENAI_API_BASE")
    monkeypatch.delenv("OPENAI_API_KEY")
    fake_openai.reset()
    result = pytester.runpytest()
    result.assert_outcomes(passed=4)
    assert fake_openai.requests == []

    # the failures the doc quotes
    shutil.copy(tape, pytester.path / "article.json")
    (pytester.path / "test_doc_failures.py").write_text(FAILURES, encoding="utf-8")
    failed = pytester.runpytest("test_doc_failures.py")
    failed.assert_outcomes(failed=3)
    printed = error_lines(failed.stdout.str())
    assert quoted("AssertionError: scripted.expect") in printed
    assert quoted("ScriptedAnswerMissing:") in printed
    assert quoted("UnrecordedRequest:") in printed
