"""One LLM call through litellm's real HTTP path to the fake OpenAI server: retries, records, costs."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import time
import traceback
import weakref
from typing import Any

import pytest
from pydantic import BaseModel

from flow_engine import BaseFlow, UnstructuredStep
from flow_engine.engine import get_engine
from flow_engine.llm.calls import LLMRequestError
from flow_engine.plugin import RunStatus, complete, generate_image
from tests.core.llm.exceptions import exception_chain
from tests.fake_openai_server import Fault, Reply, use_fake_openai

MESSAGES = [{"role": "user", "content": "Say hello"}]


def records(call_id: Any = None) -> list[Any]:
    found = get_engine().store.list_llm_requests()
    return [r for r in found if call_id is None or r.call_id == call_id]


@pytest.fixture
def online(fake_openai, tmp_path):
    use_fake_openai(fake_openai.base_url, tmp_path)
    return fake_openai


class Hello(UnstructuredStep):
    step_name = "hello"
    model = "openai/gpt-4o-mini"

    class Inputs(BaseModel):
        prompt: str


class HelloFlow(BaseFlow):
    flow_name = "hello_flow"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        result = await Hello().execute({"prompt": inputs.get("prompt", "Say hello")})
        return {"text": result.output_content}


# -- a successful call --------------------------------------------------------------------------------
async def test_a_call_sends_the_request_and_records_tokens_and_cost(online):
    online.script(Reply("Hello there", usage=(11, 7)))
    call = await complete(MESSAGES, model="openai/gpt-4o-mini", api_base=online.base_url, temperature=0.2)
    assert call.text == "Hello there"
    assert (call.prompt_tokens, call.completion_tokens, call.total_tokens) == (11, 7, 18)
    assert call.attempts == 1
    [sent] = online.chat_requests
    assert sent.body["model"] == "gpt-4o-mini"
    assert sent.body["messages"] == MESSAGES
    assert sent.body["temperature"] == 0.2
    assert sent.headers["Authorization"] == "Bearer test-key"
    [record] = records()
    assert record.status == "completed" and record.attempt == 1
    assert record.provider == "openai"
    assert record.model == "openai/gpt-4o-mini"
    assert record.api_base == online.base_url
    assert (record.prompt_tokens, record.completion_tokens, record.total_tokens) == (11, 7, 18)
    assert record.request_messages == MESSAGES
    assert record.request_params == {"temperature": 0.2}
    assert record.response["choices"][0]["message"]["content"] == "Hello there"
    # the price comes from litellm's bundled price map, by model name
    import litellm

    price = litellm.model_cost["gpt-4o-mini"]
    expected = 11 * price["input_cost_per_token"] + 7 * price["output_cost_per_token"]
    assert record.cost == pytest.approx(expected)
    assert record.cost > 0
    assert call.cost == record.cost


async def test_an_unpriced_model_costs_unknown_not_zero(online):
    online.script(Reply("hi", usage=(5, 5)))

    class Unpriced(Hello):
        model = "openai/my-local-llama"

    class UnpricedFlow(BaseFlow):
        async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
            result = await Unpriced().execute({"prompt": "hi"})
            meta = result.metadata
            return {"cost": meta["cost_estimate"], "known": meta["cost_known"], "tokens": meta["tokens_used"]}

    flow = UnpricedFlow()
    # the result says 0.0 (arithmetic works) and cost_known False; every record says unknown
    outputs = await flow.execute({})
    assert outputs == {"cost": 0.0, "known": False, "tokens": 10}
    [record] = records()
    assert record.cost is None
    store = get_engine().store
    [step] = store.list_steps(flow.run_id)
    assert step.cost_estimate is None
    assert step.step_metadata["cost_estimate"] is None and step.step_metadata["cost_known"] is False
    assert step.tokens_used == 10
    run = store.get_run(flow.run_id)
    assert run.unpriced_calls == 1


async def test_a_call_inside_a_flow_is_linked_to_its_run_and_step(online):
    online.script(Reply("Hello"))
    flow = HelloFlow()
    assert await flow.execute({}) == {"text": "Hello"}
    [step] = get_engine().store.list_steps(flow.run_id)
    [record] = get_engine().store.list_llm_requests(flow_run_id=flow.run_id)
    assert record.step_run_id == step.id
    assert step.llm_request_id == record.id
    assert step.step_metadata["provider"] == "openai"


# -- transient failures are retried ---------------------------------------------------------------------
TRANSIENT_FAULTS = {
    "429": Fault.status(429),
    "500": Fault.status(500),
    "503": Fault.status(503),
    "timeout": Fault.hang(10),
    "dropped connection": Fault.drop(),
    "malformed body": Fault.malformed(),
}


@pytest.mark.parametrize("fault", list(TRANSIENT_FAULTS.values()), ids=list(TRANSIENT_FAULTS))
async def test_a_transient_failure_is_retried_and_every_attempt_recorded(fake_openai, tmp_path, fault):
    use_fake_openai(fake_openai.base_url, tmp_path, request_timeout=0.3)
    fake_openai.fail_next(fault).script(Reply("recovered", usage=(3, 2)))
    call = await complete(MESSAGES, model="openai/gpt-4o-mini", api_base=fake_openai.base_url)
    assert call.text == "recovered"
    assert call.attempts == 2
    assert len(fake_openai.chat_requests) == 2  # ours: the openai SDK made no retries of its own
    first, second = records()
    assert first.call_id == second.call_id == call_id_of(call) == first.id  # the first attempt's id
    assert second.id != first.id
    assert (first.attempt, first.status) == (1, "failed")
    assert first.error_message
    assert first.total_tokens == 0 and first.cost is None
    assert (second.attempt, second.status) == (2, "completed")
    assert second.total_tokens == 5


def call_id_of(call: Any) -> Any:
    return next(r.call_id for r in records() if r.id == call.request_id)


async def test_a_timeout_is_retried_after_the_configured_request_timeout(fake_openai, tmp_path):
    use_fake_openai(fake_openai.base_url, tmp_path, request_timeout=0.3)
    fake_openai.fail_next(Fault.hang(10)).script(Reply("late but fine"))
    import litellm  # noqa: F401 - imported before the clock starts: the first import alone takes ~3 s

    started = time.perf_counter()
    call = await complete(MESSAGES, model="openai/gpt-4o-mini", api_base=fake_openai.base_url)
    elapsed = time.perf_counter() - started
    assert call.text == "late but fine"
    assert 0.3 <= elapsed < 3
    failed = records()[0]
    assert failed.status == "failed" and "Timeout" in failed.error_message
    assert 250 <= failed.latency_ms < 3000


async def test_retry_after_is_honoured(fake_openai, tmp_path):
    use_fake_openai(fake_openai.base_url, tmp_path, retry_max_delay=5)
    fake_openai.fail_next(Fault.status(429, retry_after=0.4)).script(Reply("ok"))
    await complete(MESSAGES, model="openai/gpt-4o-mini", api_base=fake_openai.base_url)
    first, second = fake_openai.chat_requests
    assert first.outcome == "429" and second.outcome == "reply"
    assert second.received_at - first.received_at >= 0.38


async def test_without_retry_after_the_backoff_is_the_configured_one(fake_openai, tmp_path):
    use_fake_openai(fake_openai.base_url, tmp_path, retry_initial_delay=0.01, retry_max_delay=5)
    fake_openai.fail_next(Fault.status(429)).script(Reply("ok"))
    await complete(MESSAGES, model="openai/gpt-4o-mini", api_base=fake_openai.base_url)
    first, second = fake_openai.chat_requests
    assert second.received_at - first.received_at < 0.3


async def test_without_retry_after_the_backoff_really_waits(fake_openai, tmp_path):
    """Equal jitter: the wait before retry n is between half and all of ``initial * 2**(n-1)``."""
    use_fake_openai(fake_openai.base_url, tmp_path, retry_initial_delay=0.2, retry_max_delay=5)
    fake_openai.fail_next(Fault.status(429)).fail_next(Fault.status(500)).script(Reply("ok"))
    call = await complete(MESSAGES, model="openai/gpt-4o-mini", api_base=fake_openai.base_url)
    assert call.attempts == 3
    first, second, third = fake_openai.chat_requests
    assert (first.outcome, second.outcome, third.outcome) == ("429", "500", "reply")
    assert 0.095 <= second.received_at - first.received_at < 1.5  # 0.1 to 0.2 s, plus latency
    assert 0.19 <= third.received_at - second.received_at < 1.5  # 0.2 to 0.4 s, plus latency


async def test_retry_after_is_capped_by_the_max_delay(fake_openai, tmp_path):
    use_fake_openai(fake_openai.base_url, tmp_path, retry_max_delay=0.05)
    fake_openai.fail_next(Fault.status(429, retry_after=60)).script(Reply("ok"))
    started = time.perf_counter()
    await complete(MESSAGES, model="openai/gpt-4o-mini", api_base=fake_openai.base_url)
    assert time.perf_counter() - started < 2


async def test_retries_are_capped_and_the_final_failure_is_clear(online, caplog):
    online.fail_next(500, times=5)
    with caplog.at_level(logging.WARNING, logger="flow_engine.llm"):
        with pytest.raises(LLMRequestError) as info:
            await complete(MESSAGES, model="openai/gpt-4o-mini", api_base=online.base_url)
    error = info.value
    assert error.attempts == 3  # max_retries=2
    assert error.status_code == 500 and error.transient
    assert len(online.chat_requests) == 3
    assert [(r.attempt, r.status) for r in records()] == [(1, "failed"), (2, "failed"), (3, "failed")]
    assert error.request_id == records()[-1].id
    message = str(error)
    assert "HTTP 500" in message and "gave up after 3 attempt(s)" in message
    assert "gpt-4o-mini" in message and "\n" not in message
    retries = [r for r in caplog.records if "retry" in r.getMessage()]
    assert len(retries) == 2
    assert "retry 1/2" in retries[0].getMessage()


async def test_max_retries_zero_means_one_request(fake_openai, tmp_path):
    use_fake_openai(fake_openai.base_url, tmp_path, max_retries=0)
    fake_openai.fail_next(500, times=3)
    with pytest.raises(LLMRequestError) as info:
        await complete(MESSAGES, model="openai/gpt-4o-mini", api_base=fake_openai.base_url)
    assert info.value.attempts == 1
    assert len(fake_openai.chat_requests) == 1  # the openai SDK's own retries are really off


async def test_image_generation_is_not_retried_by_the_sdk_either(fake_openai, tmp_path):
    use_fake_openai(fake_openai.base_url, tmp_path, max_retries=0)
    fake_openai.fail_next(500, times=3, endpoint="images")
    with pytest.raises(LLMRequestError):
        await generate_image("a cat", model="openai/gpt-image-1", api_base=fake_openai.base_url)
    assert len(fake_openai.image_requests) == 1


@pytest.mark.parametrize("status", [501, 505, 507, 521, 530, 599])
async def test_every_5xx_is_retried_through_litellm(online, status):
    """Not only the common 500/502/503/504: any server error is worth a capped retry."""
    online.fail_next(status).script(Reply("second time lucky"))
    call = await complete(MESSAGES, model="openai/gpt-4o-mini", api_base=online.base_url)
    assert (call.text, call.attempts) == ("second time lucky", 2)
    assert [r.outcome for r in online.chat_requests] == [str(status), "reply"]


@pytest.mark.parametrize("status", [400, 401, 404])
async def test_a_client_error_is_not_retried(online, status):
    online.fail_next(status, times=3)
    with pytest.raises(LLMRequestError) as info:
        await complete(MESSAGES, model="openai/gpt-4o-mini", api_base=online.base_url)
    assert info.value.attempts == 1 and not info.value.transient
    assert info.value.status_code == status
    assert len(online.chat_requests) == 1
    assert "not retried" in str(info.value)


async def test_a_missing_api_key_is_not_retried_and_says_which_to_set(fake_openai, tmp_path, monkeypatch):
    # litellm reports the openai SDK's "Missing credentials" as an HTTP 500: it is not a server error
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    use_fake_openai(fake_openai.base_url, tmp_path, api_key=None)
    with pytest.raises(LLMRequestError) as info:
        await complete(MESSAGES, model="openai/gpt-4o-mini", api_base=fake_openai.base_url)
    assert info.value.attempts == 1 and not info.value.transient
    assert info.value.kind == "credentials" and info.value.status_code is None
    assert "Missing credentials" in str(info.value) and "not retried" in str(info.value)
    assert "OPENAI_API_KEY" in str(info.value) and "may be down" not in str(info.value)
    assert fake_openai.chat_requests == []  # nothing was sent
    [row] = records()
    assert row.status == "failed" and "Missing credentials" in (row.error_message or "")


async def test_connection_refused_is_retried_then_fails_clearly(tmp_path, refused_base_url):
    use_fake_openai(refused_base_url, tmp_path)
    with pytest.raises(LLMRequestError) as info:
        await complete(MESSAGES, model="openai/gpt-4o-mini", api_base=refused_base_url)
    assert info.value.attempts == 3 and info.value.transient
    assert f"connection refused at {refused_base_url}" in str(info.value)  # not litellm's "HTTP 500"
    found = records()
    assert [r.status for r in found] == ["failed"] * 3
    assert all("Connection" in r.error_message for r in found)


async def test_a_failed_step_and_run_say_why(online):
    online.fail_next(503, times=10)
    flow = HelloFlow()
    with pytest.raises(LLMRequestError):
        await flow.execute({})
    store = get_engine().store
    run = store.get_run(flow.run_id)
    [step] = store.list_steps(flow.run_id)
    assert run.status == step.status == RunStatus.FAILED
    for message in (run.error_message, step.error_message):
        assert message.startswith("LLMRequestError: completion with model 'openai/gpt-4o-mini'")
        assert "HTTP 503" in message and "gave up after 3 attempt(s)" in message
    attempts = store.list_llm_requests(step_run_id=step.id)
    assert [(a.attempt, a.status) for a in attempts] == [(1, "failed"), (2, "failed"), (3, "failed")]
    assert step.llm_request_id is None  # no successful call
    assert step.tokens_used == 0


async def hanging_call(server: Any) -> asyncio.Task[Any]:
    """A call the server holds (it hangs for 10 s), returned once the server has received it."""
    before = len(server.chat_requests)
    server.fail_next(Fault.hang(10))
    task = asyncio.ensure_future(complete(MESSAGES, model="openai/gpt-4o-mini", api_base=server.base_url))
    for _ in range(1000):
        await asyncio.sleep(0.01)
        if len(server.chat_requests) > before:
            break
    return task


async def test_a_cancelled_call_is_recorded_as_cancelled(online):
    task = await hanging_call(online)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [record] = records()
    assert record.status == "cancelled"


# -- secrets ------------------------------------------------------------------------------------------
SECRET = "sk-flowtest-DO-NOT-STORE-0123456789abcdef"


@pytest.mark.parametrize("database", ["memory", "sqlite"])
async def test_the_api_key_is_sent_but_never_stored_or_logged(fake_openai, tmp_path, caplog, database):
    url = "memory://" if database == "memory" else f"sqlite:///{tmp_path / 'db' / 'runs.db'}"
    (tmp_path / "db").mkdir()
    use_fake_openai(fake_openai.base_url, tmp_path, api_key=SECRET, database_url=url)
    fake_openai.fail_next(Fault.status(429, message=f"Rate limit for key {SECRET}; slow down"))
    fake_openai.script(Reply("fine"))
    flow = HelloFlow()
    with caplog.at_level(logging.DEBUG):
        await flow.execute({})
        fake_openai.fail_next(Fault.status(401, message=f"Incorrect API key provided: {SECRET}."))
        failing = HelloFlow()
        with pytest.raises(LLMRequestError) as info:
            await failing.execute({})
    assert SECRET not in str(info.value)
    assert all(r.headers["Authorization"] == f"Bearer {SECRET}" for r in fake_openai.chat_requests)
    store = get_engine().store
    dumped = [
        *(r.model_dump_json() for r in store.list_runs()),
        *(s.model_dump_json() for run in store.list_runs() for s in store.list_steps(run.id)),
        *(r.model_dump_json() for r in store.list_llm_requests()),
    ]
    assert len(store.list_llm_requests()) == 3
    assert any("Incorrect API key provided" in d for d in dumped)  # the errors are there, without the key
    assert not [d for d in dumped if SECRET in d or SECRET[10:30] in d]
    assert SECRET not in caplog.text
    get_engine().close()
    contents = [file.read_bytes() for file in (tmp_path / "db").iterdir()]  # the database, byte for byte
    assert not [c for c in contents if SECRET[10:30].encode() in c]
    if database == "sqlite":
        assert any(b"Incorrect API key provided" in c for c in contents)


async def test_a_key_given_as_a_step_parameter_is_not_stored(online):
    class WithKey(Hello):
        llm_params = {"api_key": SECRET, "max_tokens": 20}

    online.fail_next(Fault.status(401, message=f"Incorrect API key provided: {SECRET}."))
    with pytest.raises(LLMRequestError) as info:
        await WithKey().execute({"prompt": "hi"})
    assert online.chat_requests[0].headers["Authorization"] == f"Bearer {SECRET}"
    [record] = records()
    assert record.request_params == {"max_tokens": 20}
    assert SECRET not in record.model_dump_json()
    assert SECRET not in str(info.value)


HEADER_SECRET = "apim-5f3c9e1b7d2a4c6e8f0a1b2c"  # a custom key header no name list would catch


class WithKeyHeader(Hello):
    llm_params = {"extra_headers": {"Ocp-Apim-Subscription-Key": HEADER_SECRET}, "max_tokens": 20}


class KeyHeaderFlow(BaseFlow):
    flow_name = "key_header_flow"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return {"text": (await WithKeyHeader().execute({"prompt": "hi"})).output_content}


async def test_a_server_echoing_every_header_leaks_no_key_anywhere(fake_openai, tmp_path, caplog):
    """The key and a custom key header, echoed by the server in its error bodies, are in no raised
    exception (chained ones included), traceback, log line, stored row or cassette."""
    from flow_engine.llm.cassette import cassette
    from flow_engine.llm.redact import ProviderError

    (tmp_path / "db").mkdir()
    url = f"sqlite:///{tmp_path / 'db' / 'runs.db'}"
    use_fake_openai(fake_openai.base_url, tmp_path, api_key=SECRET, database_url=url)
    fake_openai.fail_next(Fault.status(429, retry_after=0.01, echo_headers=True))
    fake_openai.fail_next(Fault.status(401, echo_headers=True))
    tape = tmp_path / "tape.json"
    with caplog.at_level(logging.DEBUG), cassette(tape, mode="record"):
        with pytest.raises(LLMRequestError) as info:
            await KeyHeaderFlow().execute({})
    sent = {k.lower(): v for k, v in fake_openai.chat_requests[-1].headers.items()}
    assert sent["ocp-apim-subscription-key"] == HEADER_SECRET and sent["authorization"] == f"Bearer {SECRET}"

    chain = exception_chain(info.value)
    printed = "".join(traceback.format_exception(info.value))
    assert "request headers" in printed  # the echo is there, with the secrets blanked
    assert [e for e in chain if isinstance(e, ProviderError) and "litellm" in str(e)]
    texts = [printed, caplog.text, tape.read_text(), *(str(e) for e in chain)]
    store = get_engine().store
    texts += [r.model_dump_json() for r in store.list_runs()]
    texts += [s.model_dump_json() for run in store.list_runs() for s in store.list_steps(run.id)]
    texts += [r.model_dump_json() for r in store.list_llm_requests()]
    assert len(store.list_llm_requests()) == 2
    assert not [t for t in texts if SECRET in t or HEADER_SECRET in t or HEADER_SECRET[5:20] in t]
    get_engine().close()
    stored = (tmp_path / "db" / "runs.db").read_bytes()
    assert b"request headers" in stored and HEADER_SECRET.encode() not in stored


async def test_an_api_base_with_credentials_is_refused_before_any_request(fake_openai, tmp_path):
    from flow_engine.errors import UsageError

    use_fake_openai(fake_openai.base_url, tmp_path)
    host = fake_openai.base_url.split("://", 1)[1]
    with pytest.raises(UsageError) as info:
        await complete(model="openai/gpt-4o-mini", messages=MESSAGES, api_base=f"http://me:hunter22@{host}")
    assert "user:password@" in str(info.value) and "hunter22" not in str(info.value)
    assert fake_openai.chat_requests == []
    with pytest.raises(UsageError, match="invalid setting api_base: must not contain user:password@"):
        use_fake_openai(f"http://me:hunter22@{host}", tmp_path)


# -- classification helpers ------------------------------------------------------------------------------
async def test_a_bug_in_an_in_process_provider_is_not_retried(engine):
    from flow_engine.plugin import ModelProviderInfo, hookimpl

    def make() -> Any:
        from litellm import CustomLLM

        class Broken(CustomLLM):
            async def acompletion(self, *args: Any, **kwargs: Any) -> Any:
                raise ValueError("the provider has a bug")

        return Broken()

    class Plugin:
        @hookimpl
        def register_model_providers(self, register: Any) -> None:
            register(ModelProviderInfo("brokenprov", make, "a broken provider"))

    engine.plugins.register(Plugin(), name="broken-provider")
    with pytest.raises(LLMRequestError) as info:
        await complete(MESSAGES, model="brokenprov/x")
    assert info.value.attempts == 1
    assert "the provider has a bug" in str(info.value)
    assert [r.status for r in records()] == ["failed"]


async def test_concurrent_calls_in_one_flow_are_each_recorded_once(online):
    online.latency_ms = 20

    class Many(BaseFlow):
        async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
            results = await asyncio.gather(*(Hello().execute({"prompt": f"n{i}"}) for i in range(40)))
            return {"texts": [r.output_content for r in results]}

    flow = Many()
    outputs = await flow.execute({})
    assert outputs["texts"] == [f"fake answer to: n{i}" for i in range(40)]
    assert len(online.chat_requests) == 40
    store = get_engine().store
    steps = store.list_steps(flow.run_id)
    found = store.list_llm_requests(flow_run_id=flow.run_id)
    assert len(found) == 40 and {r.step_run_id for r in found} == {s.id for s in steps}


async def test_a_slow_in_process_provider_times_out_and_is_retried(engine, tmp_path):
    from flow_engine.plugin import ModelProviderInfo, hookimpl

    calls: list[float] = []

    def make() -> Any:
        from litellm import CustomLLM

        class Slow(CustomLLM):
            async def acompletion(self, *args: Any, **kwargs: Any) -> Any:
                calls.append(time.perf_counter())
                await asyncio.sleep(10)

        return Slow()

    class Plugin:
        @hookimpl
        def register_model_providers(self, register: Any) -> None:
            register(ModelProviderInfo("slowprov", make, "a slow provider"))

    engine = configure_for(tmp_path, request_timeout=0.2, max_retries=1)
    engine.plugins.register(Plugin(), name="slow-provider")
    with pytest.raises(LLMRequestError, match=r"no answer within 0\.2 s\).*gave up after 2 attempt"):
        await complete(MESSAGES, model="slowprov/x")
    assert len(calls) == 2
    assert [r.status for r in records()] == ["failed", "failed"]
    assert 0.15 < calls[1] - calls[0] < 2  # cut at the request timeout, not at the provider's 10 s


async def test_an_attempts_deadline_does_not_keep_the_callers_context_alive():
    """asyncio keeps a cancelled timer, and the context it was made in, until it purges such timers in
    batches (or the 600 s default passes); a step's context holds the step's scope and every answer
    it got, so the attempt's deadline is set from an empty context."""
    from flow_engine.llm.calls import _within

    held_by_the_step = contextvars.ContextVar[Any]("held_by_the_step")

    class Answer:
        pass

    kept: list[weakref.ref[Answer]] = []

    async def step() -> None:
        answer = Answer()
        kept.append(weakref.ref(answer))
        held_by_the_step.set(answer)

        async def call() -> str:
            return "done"

        assert await _within(600, call()) == "done"

    # a timer due earlier (a run's heartbeat) keeps the cancelled one from the top of the loop's heap
    heartbeat = asyncio.get_running_loop().call_later(30, lambda: None)
    await asyncio.create_task(step())  # the task's context goes with the task
    await asyncio.sleep(0)  # the finished task's last callback lets go of it
    gc.collect()
    heartbeat.cancel()
    assert kept[0]() is None


def configure_for(tmp_path: Any, **settings: Any) -> Any:
    from flow_engine import configure

    return configure(database_url="memory://", data_dir=tmp_path / "data", **settings)


async def test_a_model_of_a_disabled_provider_plugin_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOW_ENGINE_DISABLE_PLUGINS", "offline")
    configure_for(tmp_path)
    with pytest.raises(LLMRequestError) as info:
        await complete(MESSAGES, model="offline/x")
    assert "the 'offline' plugin is disabled" in str(info.value)
    assert info.value.attempts == 1
