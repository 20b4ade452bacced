"""A key in the query string of ``api_base`` (``?key=``, ``?api-key=``, ``?code=``) is a secret: a server
that echoes the URL it was sent in its error text gets it blanked in every stored row, exception, log
line and printed output, as the API key and header values are."""

from __future__ import annotations

import logging
import textwrap
import traceback
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from flow_engine import BaseFlow, UnstructuredStep
from flow_engine.engine import get_engine
from flow_engine.llm.calls import LLMRequestError
from tests.core.llm.exceptions import exception_chain
from tests.fake_openai_server import FakeOpenAI, Fault, run_flow_cli, use_fake_openai

SECRET = "qs-Secret-0123456789abcdef"


class Hello(UnstructuredStep):
    step_name = "hello"
    model = "openai/gpt-4o-mini"

    class Inputs(BaseModel):
        prompt: str


class HelloFlow(BaseFlow):
    flow_name = "query_key_flow"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"text": (await Hello().execute({"prompt": "hi"})).output_content}


@pytest.mark.parametrize(
    ("query", "status", "where"),
    [
        (f"key={SECRET}", 400, "step"),
        (f"api-key={SECRET}&api-version=2024-10-21", 500, "step"),  # retried: a warning is logged
        (f"code={SECRET}", 401, "setting"),  # Azure Functions' key, FLOW_ENGINE_API_BASE
    ],
)
async def test_a_key_in_the_api_base_query_echoed_by_the_server_is_stored_and_logged_nowhere(
    fake_openai: FakeOpenAI, tmp_path, caplog, capfd, monkeypatch, query, status, where
):
    echoed = Fault.status(status, message="no deployment", echo_url=True)
    fake_openai.fail_next(echoed, times=2)  # a 500 is retried once (max_retries=1)
    api_base = f"{fake_openai.base_url}?{query}"
    (tmp_path / "db").mkdir()
    database = tmp_path / "db" / "runs.db"
    setting = api_base if where == "setting" else fake_openai.base_url
    use_fake_openai(setting, tmp_path, database_url=f"sqlite:///{database}", max_retries=1)
    if where == "step":
        monkeypatch.setattr(Hello, "api_base", api_base)
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(LLMRequestError) as info:
            await HelloFlow().execute({})
    sent = fake_openai.chat_requests
    assert sent and all(SECRET in request.path for request in sent)  # the key was sent

    store = get_engine().store
    [run] = store.list_runs()
    requests = store.list_llm_requests()
    assert len(requests) == (2 if status == 500 else 1)
    assert all(r.error_message and "no deployment; requested POST" in r.error_message for r in requests)
    assert run.status == "failed" and "no deployment; requested POST" in (run.error_message or "")
    assert all("?" in (r.api_base or "") for r in requests)
    printed = "".join(traceback.format_exception(info.value))
    captured = capfd.readouterr()
    texts = {
        "exception": printed,
        "chain": "\n".join(str(e) for e in exception_chain(info.value)),
        "logs": caplog.text,
        "stderr": captured.err,
        "stdout": captured.out,
        "run": run.model_dump_json(),
        "steps": "".join(s.model_dump_json() for s in store.list_steps(run.id)),
        "llm_requests": "".join(r.model_dump_json() for r in requests),
    }
    assert {name for name, text in texts.items() if SECRET in text or SECRET[3:19] in text} == set()
    get_engine().close()
    stored = database.read_bytes()
    assert b"no deployment; requested POST" in stored and SECRET[3:19].encode() not in stored


@pytest.mark.slow
def test_flow_run_prints_no_key_of_the_api_base_query(fake_openai: FakeOpenAI, tmp_path):
    """``flow run --traceback`` with ``FLOW_ENGINE_API_BASE=...?key=SECRET``: the server's echo of the
    URL is printed (and stored) with the key blanked."""
    flows = tmp_path / "query_flows.py"
    flows.write_text(
        textwrap.dedent(
            """
            from typing import Any
            from pydantic import BaseModel
            from flow_engine import BaseFlow, UnstructuredStep

            class Say(UnstructuredStep):
                step_name = "say"
                model = "openai/gpt-4o-mini"

                class Inputs(BaseModel):
                    prompt: str

            class SayFlow(BaseFlow):
                flow_name = "say_flow"

                async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
                    return {"text": (await Say().execute({"prompt": "hi"})).output_content}
            """
        ),
        encoding="utf-8",
    )
    fake_openai.fail_next(Fault.status(400, message="no deployment", echo_url=True))
    result = run_flow_cli(
        f"{fake_openai.base_url}?key={SECRET}",
        tmp_path,
        "run",
        f"{flows}:SayFlow",
        "--traceback",
    )
    assert result.returncode == 1, result.stderr
    assert fake_openai.chat_requests and SECRET in fake_openai.chat_requests[0].path
    assert "no deployment; requested POST" in result.stderr
    assert SECRET[3:19] not in result.stderr + result.stdout
    assert SECRET[3:19].encode() not in Path(tmp_path / "runs.db").read_bytes()


# -- the scrubber itself -------------------------------------------------------------------------------
def test_credential_query_values_of_an_api_base_are_secrets_as_written_decoded_and_encoded():
    from flow_engine.llm.redact import secrets_in_params, secrets_in_url

    found = secrets_in_url("https://gw.example/v1?key=a%2Bb+c1&api-version=2024-10-21;sig=xyz123")
    assert {"a%2Bb+c1", "a+b+c1", "a+b c1", "a%2Bb%20c1", "xyz123"} <= set(found)
    assert secrets_in_url("https://gw.example/v1") == [] and secrets_in_url(None) == []
    assert "p4ssw0rd" in secrets_in_url("https://me:p4ssw0rd@gw.example/v1?x=1")
    params = {"api_base": "http://h/v1?code=fn-key-1234", "base_url": "http://h/v1?token=tk-5678"}
    assert {"fn-key-1234", "tk-5678"} <= set(secrets_in_params(params))
    # under a name no pattern knows, a long random-looking value is a secret too
    assert "Zx81kQ2mP0vL7aB3nR5tW9" in secrets_in_url("https://gw.example/v1?x-gw=Zx81kQ2mP0vL7aB3nR5tW9")


def test_ordinary_query_values_are_not_secrets_and_do_not_garble_messages():
    """``?format=json&stream=true&api-version=2024-02-01``: blanking those everywhere would turn an
    error text into "Invalid *** body: ... must be ***" (and break a cassette's JSON)."""
    from flow_engine.llm.redact import redact_text, secrets_in_url

    url = "https://gw.example/v1?api-version=2024-02-01&format=json&stream=true&key=k-123456"
    assert secrets_in_url(url) == ["k-123456"]
    message = "Invalid json body: field 'stream' must be true; dated 2024-02-01 (key k-123456)"
    assert redact_text(message, secrets_in_url(url)) == (
        "Invalid json body: field 'stream' must be true; dated 2024-02-01 (key ***)"
    )


def test_an_api_base_is_shown_with_every_query_value_hidden():
    from flow_engine.llm.redact import redact_api_base

    shown = redact_api_base("https://me:pw@gw.example/v1?key=k1234&api-version=2024-10-21&code=c9")
    assert shown == "https://me:***@gw.example/v1?key=***&api-version=***&code=***"
    assert redact_api_base("http://127.0.0.1:8080/v1") == "http://127.0.0.1:8080/v1"
    assert redact_api_base("http://h/v1?a=&b") == "http://h/v1?a=***&***"  # every name kept
    assert redact_api_base(None) is None


def test_a_url_in_a_text_loses_its_password_and_credential_like_query_values():
    from flow_engine.llm.redact import redact_text

    text = (
        "404 for http://127.0.0.1:9/v1/?key=abcd1234chat/completions; proxy https://u:pw99@p/x?token=t1&n=2"
    )
    clean = redact_text(text)
    assert "abcd1234" not in clean and "pw99" not in clean and "t1&" not in clean
    assert "http://127.0.0.1:9/v1/?key=***" in clean and "https://u:***@p/x?token=***&n=2" in clean
    assert (
        redact_text("see https://docs.example/a?page=2, then retry")
        == "see https://docs.example/a?page=2, then retry"
    )
