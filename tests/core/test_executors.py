"""Executors in the core: the ``register_executors`` hook, ``BaseFlow.submit``, the ``local`` executor,
the atomic claim (memory, SQLite, PostgreSQL), and what a delivery does with a run it finds taken,
ended or abandoned. (Real Celery workers: tests/plugins/celery.)"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from flow_engine import BaseFlow, BaseStep, InputValidationError, configure
from flow_engine.errors import ConfigurationError, PluginConflictError
from flow_engine.executors import ExecutorUnavailable, RunExecutor, execute_submitted, get_executor
from flow_engine.plugin import ExecutorInfo, RunRecord, RunStatus, hookimpl
from flow_engine.storage import utcnow
from flow_engine.submit import run_has_ended, wait_for_run, wait_for_run_blocking

CALLS: Counter[str] = Counter()
HANG_AT: set[int] = set()


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.clear()
    HANG_AT.clear()


class Bump(BaseStep):
    class Inputs(BaseModel):
        n: int

    async def run(self, inputs: Inputs) -> int:
        CALLS[f"bump {inputs.n}"] += 1
        await asyncio.sleep(3600 if inputs.n in HANG_AT else 0.01)
        return inputs.n + 1


class Twice(BaseFlow):
    flow_name = "twice"
    total_steps = 2

    class Inputs(BaseModel):
        n: int

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        n = (await Bump().execute({"n": inputs["n"]})).output_content
        n = (await Bump().execute({"n": n})).output_content
        return {"n": n}


class Inline(RunExecutor):
    """A test executor: records what it is handed; the test decides when (and whether) it runs."""

    def __init__(self, engine: Any, fail: bool = False):
        self.handed: list[tuple[RunRecord, type[BaseFlow]]] = []
        self.fail = fail

    async def enqueue(self, run: RunRecord, flow_class: type[BaseFlow]) -> None:
        if self.fail:
            raise ExecutorUnavailable("the broker is on holiday")
        self.handed.append((run, flow_class))


class InlinePlugin:
    @staticmethod
    @hookimpl
    def register_executors(register: Any) -> None:
        register(ExecutorInfo("inline", Inline, "for tests"))
        register(ExecutorInfo("broken", lambda engine: Inline(engine, fail=True), "always unavailable"))


@pytest.fixture
def inline(engine):  # type: ignore[no-untyped-def]
    engine.plugins.register(InlinePlugin(), name="inline-executor")
    yield engine
    engine.plugins.unregister("inline-executor")


# -- the registry -------------------------------------------------------------------------------
def test_builtin_executors_are_registered_by_plugins(engine):
    executors = engine.plugins.executors()
    assert executors["local"].plugin == "local_executor" and executors["local"].in_process
    assert executors["celery"].plugin == "celery" and not executors["celery"].in_process
    assert engine.plugins.provides()["celery"]["executors"] == ["celery"]


def test_a_plugin_registers_an_executor_with_the_hook(inline):
    assert inline.plugins.executors()["inline"].plugin == "inline-executor"
    assert isinstance(get_executor("inline"), Inline)
    assert get_executor("inline") is get_executor("inline")  # built once per engine


def test_two_plugins_claiming_one_executor_name_is_one_error_naming_both(engine):
    class Usurper:
        @staticmethod
        @hookimpl
        def register_executors(register: Any) -> None:
            register(ExecutorInfo("celery", Inline))

    engine.plugins.register(Usurper(), name="usurper")
    try:
        with pytest.raises(PluginConflictError, match=r"executor 'celery' .* 'celery' and 'usurper'"):
            engine.plugins.executors()
    finally:
        engine.plugins.unregister("usurper")


def test_without_a_setting_submit_uses_the_executor_a_plugin_marks_default(engine, tmp_path):
    assert engine.settings.executor is None
    assert engine.plugins.default_executor() == "local"  # the built-in plugin marks it; core names none
    assert get_executor().name == "local"

    class OwnDefault:
        @staticmethod
        @hookimpl
        def register_executors(register: Any) -> None:
            register(ExecutorInfo("inline", Inline, "for tests", default=True))

    other = configure(database_url="memory://", data_dir=tmp_path, disable_plugins="local_executor")
    other.plugins.register(OwnDefault(), name="own-default")
    assert other.plugins.default_executor() == "inline"
    assert isinstance(get_executor(engine=other), Inline)


def test_the_old_default_executor_constant_still_resolves_with_a_deprecation_warning(engine):
    import flow_engine.executors as executors

    with pytest.warns(DeprecationWarning, match=r"DEFAULT_EXECUTOR is deprecated.*default_executor\(\)"):
        assert executors.DEFAULT_EXECUTOR == "local"
    with pytest.raises(AttributeError, match="NO_SUCH_NAME"):
        executors.NO_SUCH_NAME  # noqa: B018


async def test_with_no_executor_registered_submit_says_so_and_writes_nothing(tmp_path):
    engine = configure(database_url="memory://", data_dir=tmp_path, disable_plugins="local_executor,celery")
    with pytest.raises(ConfigurationError, match="no executor is registered"):
        await Twice().submit({"n": 1})
    assert engine.store.list_runs() == []


async def test_an_unknown_executor_lists_the_installed_ones_and_writes_nothing(engine):
    with pytest.raises(ConfigurationError, match=r"no executor named 'nope'; installed executors: .*local"):
        await Twice().submit({"n": 1}, executor="nope")
    assert engine.store.list_runs() == []


async def test_the_celery_executor_without_a_broker_url_is_refused_before_anything_is_written(engine):
    with pytest.raises(ConfigurationError, match="FLOW_ENGINE_BROKER_URL"):
        await Twice().submit({"n": 1}, executor="celery")
    assert engine.store.list_runs() == []


# -- submit -------------------------------------------------------------------------------------
async def test_submit_stores_a_pending_background_run_then_hands_it_over(inline):
    flow = Twice()
    user = uuid.uuid4()
    run_id = await flow.submit(
        {"n": "4"}, user_id=str(user), executor="inline", model="offline/x", metadata={"k": "v"}, max_tokens=9
    )
    assert flow.run_id == run_id
    [(handed, flow_class)] = get_executor("inline").handed  # type: ignore[attr-defined]
    assert handed.id == run_id and flow_class is Twice
    run = inline.store.get_run(run_id)
    assert (run.status, run.execution_mode, run.user_id, run.inputs) == (
        "pending",
        "background",
        user,
        {"n": 4},
    )
    assert run.total_steps == 2 and run.claimed_by is None and run.started_at is None
    assert run.flow_metadata["k"] == "v" and run.flow_metadata["flow_ref"].endswith(":Twice")
    assert run.flow_metadata["background"] == {
        "executor": "inline",
        "model": "offline/x",
        "max_cost": None,
        "max_tokens": 9,
    }


async def test_invalid_inputs_are_refused_before_anything_is_written(inline):
    with pytest.raises(InputValidationError, match="n"):
        await Twice().submit({"n": "many"}, executor="inline")
    assert inline.store.list_runs() == []
    assert get_executor("inline").handed == []  # type: ignore[attr-defined]


async def test_an_executor_that_cannot_take_the_run_leaves_it_failed_with_the_reason(inline):
    flow = Twice()
    with pytest.raises(ExecutorUnavailable, match="on holiday"):
        await flow.submit({"n": 1}, executor="broken")
    run = inline.store.get_run(flow.run_id)
    assert run.status == "failed" and "executor 'broken': the broker is on holiday" in run.error_message


async def test_a_run_that_cannot_be_handed_back_is_left_failed_with_the_reason(inline):
    from flow_engine import flow_runner

    flow = Twice()
    await flow.submit({"n": 1}, executor="inline")
    store = inline.store
    await store.claim_run(flow.run_id, "worker-1", flow_runner.stale_before())
    await store.update_run(flow.run_id, {"status": "failed", "error_message": "first try failed"})
    failed = store.get_run(flow.run_id)
    with pytest.raises(ExecutorUnavailable, match="on holiday"):
        await flow_runner.resubmit(failed, Twice, executor="broken")
    run = store.get_run(flow.run_id)
    reason = f"could not hand run {run.id} back to executor 'broken': the broker is on holiday"
    assert run.status == "failed" and reason in run.error_message


async def test_an_answered_run_that_cannot_be_handed_back_is_left_failed_with_the_reason(inline):
    from flow_engine.respond import hand_back

    flow = Twice()
    await flow.submit({"n": 1}, executor="inline")
    store = inline.store
    answered = {"background": {"executor": "broken"}}  # its workers' broker went away meanwhile
    await store.update_run(flow.run_id, {"status": "waiting", "flow_metadata": answered})
    with pytest.raises(ExecutorUnavailable, match="on holiday"):
        await hand_back(store.get_run(flow.run_id), Twice)
    run = store.get_run(flow.run_id)
    reason = f"could not hand answered run {run.id} back to executor 'broken': the broker is on holiday"
    assert run.status == "failed" and reason in run.error_message  # not pending with nobody to run it


async def test_the_local_executor_runs_submitted_flows_concurrently_in_this_process(engine):
    ids = [await Twice().submit({"n": n}) for n in range(5)]  # local is the default
    runs = await asyncio.gather(*(wait_for_run(run_id, poll_interval=0.02) for run_id in ids))
    assert [r.outputs for r in runs] == [{"n": n + 2} for n in range(5)]
    assert {r.status for r in runs} == {"completed"} and {r.execution_mode for r in runs} == {"background"}
    assert len({r.claimed_by for r in runs}) == 1 and runs[0].claimed_by.startswith("local:")
    assert sum(CALLS.values()) == 10


async def test_a_flow_submitted_inside_a_flow_is_a_top_level_run(engine):
    class Launcher(BaseFlow):
        flow_name = "launcher"

        async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
            return {"submitted": str(await Twice().submit({"n": 1}))}

    launched = await Launcher().execute({})
    run = await wait_for_run(launched["submitted"], poll_interval=0.02)
    assert run.status == "completed" and run.parent_run_id is None


# -- claiming -----------------------------------------------------------------------------------
@pytest.fixture(params=["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def claim_store(request, tmp_path):  # type: ignore[no-untyped-def]
    from tests.plugins.sql.databases import empty_database

    if request.param == "memory":
        yield configure(database_url="memory://").store
        return
    with empty_database(request.param, tmp_path) as url:
        if request.param == "postgresql":
            from flow_engine.plugins.sql import migrate

            migrate.upgrade(url)
        yield configure(database_url=url).store
        configure(database_url="memory://")  # closes the SQL store before its schema is dropped


async def _pending(store: Any, **fields: Any) -> uuid.UUID:
    record = RunRecord(flow_name="twice", execution_mode="background", **fields)
    await store.create_run(record)
    return record.id


async def test_claim_takes_pending_crashed_and_stale_runs_only(claim_store):
    now = utcnow()
    stale_before = now - timedelta(seconds=30)
    pending = await _pending(claim_store)
    crashed = await _pending(claim_store, status="crashed", started_at=now - timedelta(hours=1))
    stale = await _pending(claim_store, status="running", last_heartbeat=now - timedelta(minutes=5))
    fresh = await _pending(claim_store, status="running", last_heartbeat=now, claimed_by="alive")
    ended = [await _pending(claim_store, status=s) for s in ("completed", "failed", "cancelled")]

    for run_id in (pending, crashed, stale):
        assert await claim_store.claim_run(run_id, "me", stale_before) is True
        run = claim_store.get_run(run_id)
        assert (run.status, run.claimed_by) == ("running", "me")
        assert run.last_heartbeat > stale_before and run.started_at is not None
    assert claim_store.get_run(crashed).started_at == now - timedelta(hours=1)  # kept
    first_start = claim_store.get_run(pending)
    assert first_start.started_at == first_start.last_heartbeat  # how a first start is told apart
    for run_id in (fresh, *ended, pending):  # pending was just claimed: its heartbeat is fresh now
        assert await claim_store.claim_run(run_id, "other", stale_before) is False
    assert claim_store.get_run(fresh).claimed_by == "alive"
    assert [claim_store.get_run(i).status for i in ended] == ["completed", "failed", "cancelled"]
    assert await claim_store.claim_run(uuid.uuid4(), "me", stale_before) is False


async def test_of_many_simultaneous_claims_exactly_one_wins(claim_store):
    ids = [await _pending(claim_store) for _ in range(10)]
    stale_before = utcnow() - timedelta(seconds=30)
    results = await asyncio.gather(
        *(claim_store.claim_run(run_id, f"worker-{w}", stale_before) for run_id in ids for w in range(8))
    )
    per_run = [results[i * 8 : (i + 1) * 8] for i in range(10)]
    assert all(sum(r) == 1 for r in per_run)
    for run_id, outcomes in zip(ids, per_run, strict=True):
        assert claim_store.get_run(run_id).claimed_by == f"worker-{outcomes.index(True)}"


@pytest.mark.postgres
async def test_claims_from_two_processes_connections_never_both_win(tmp_path):
    """Two stores = two writer connections, as two workers have: PostgreSQL's row lock decides."""
    from flow_engine.plugins.sql import migrate
    from flow_engine.plugins.sql.store import SqlStore
    from tests.plugins.sql.databases import pg_schema

    with pg_schema() as url:
        migrate.upgrade(url)
        first, second = SqlStore(url), SqlStore(url)
        try:
            ids = [await _pending(first) for _ in range(50)]
            stale_before = utcnow() - timedelta(seconds=30)
            a = asyncio.gather(*(first.claim_run(i, "a", stale_before) for i in ids))
            b = asyncio.gather(*(second.claim_run(i, "b", stale_before) for i in ids))
            won_a, won_b = await asyncio.gather(a, b)
            assert all(x != y for x, y in zip(won_a, won_b, strict=True))
            assert [first.get_run(i).claimed_by for i in ids] == ["a" if x else "b" for x in won_a]
        finally:
            first.close()
            second.close()


# -- deliveries ---------------------------------------------------------------------------------
async def test_a_delivery_of_a_run_that_already_ended_or_is_gone_does_nothing(inline):
    run_id = await Twice().submit({"n": 1}, executor="inline")
    await inline.store.request_cancel(run_id)  # cancelled while pending
    assert await execute_submitted(run_id, "w") == "cancelled"
    assert await execute_submitted(uuid.uuid4(), "w") == "missing"
    assert CALLS == {}


async def test_a_delivery_of_a_run_owned_by_a_live_worker_does_not_run_it(inline):
    run_id = await Twice().submit({"n": 1}, executor="inline")
    assert await inline.store.claim_run(run_id, "first", utcnow())
    assert await execute_submitted(run_id, "second", watch=False) == "running"
    stop = await execute_submitted(run_id, "second", should_stop=lambda: True)
    assert stop == "released"  # a worker shutting down gives the message back
    assert CALLS == {} and inline.store.get_run(run_id).claimed_by == "first"


async def test_a_watching_delivery_returns_when_the_owner_finishes(engine):
    configure(database_url="memory://", heartbeat_interval=0.02, stale_after=5)
    run_id = await Twice().submit({"n": 1}, executor="local")  # the owner runs it in this process
    for _ in range(500):  # let the owner's task claim it first (task start order differs by Python)
        if _store().get_run(run_id).claimed_by:
            break
        await asyncio.sleep(0.001)
    assert _store().get_run(run_id).claimed_by.startswith("local:")
    assert await asyncio.wait_for(execute_submitted(run_id, "watcher"), 5) == "completed"
    assert _store().get_run(run_id).claimed_by.startswith("local:")
    assert CALLS == {"bump 1": 1, "bump 2": 1}  # executed once, by the owner


def _store() -> Any:
    from flow_engine.engine import get_engine

    return get_engine().store


@pytest.fixture
def fast_crash_detection(engine):  # type: ignore[no-untyped-def]
    """A memory store where a run is stale 0.2 s after its last heartbeat, and the inline executor."""
    fresh = configure(database_url="memory://", heartbeat_interval=0.02, stale_after=0.2)
    fresh.plugins.register(InlinePlugin(), name="inline-executor")
    return fresh.store


async def test_a_watching_delivery_takes_over_when_the_owners_heartbeat_stops(fast_crash_detection):
    store = fast_crash_detection
    run_id = await Twice().submit({"n": 3}, executor="inline")
    assert await store.claim_run(run_id, "dead-worker", utcnow())  # ... and then it dies before a step
    assert await asyncio.wait_for(execute_submitted(run_id, "rescuer"), 5) == "completed"
    run = store.get_run(run_id)
    assert (run.claimed_by, run.outputs, run.step_progress) == ("rescuer", {"n": 5}, 2)
    assert "resumed" not in run.flow_metadata  # nothing had been done: a plain first execution


async def test_a_run_taken_over_after_its_worker_died_is_resumed_without_redoing_steps(fast_crash_detection):
    store = fast_crash_detection
    run_id = await Twice().submit({"n": 1}, executor="inline")
    HANG_AT.add(2)  # the first worker completes step 1 and is stuck in step 2 ...
    first = asyncio.create_task(execute_submitted(run_id, "first"))
    while CALLS["bump 2"] == 0:  # noqa: ASYNC110 - the step is the one to tell us
        await asyncio.sleep(0.01)
    for task in asyncio.all_tasks():  # ... when it "dies": its heartbeat stops, it writes nothing more
        if task.get_coro().__name__ == "_heartbeat":  # type: ignore[union-attr]
            task.cancel()
    HANG_AT.clear()
    steps = store.list_steps(run_id)
    assert [(s.step_key, s.status) for s in steps] == [("bump", "completed"), ("bump#2", "running")]

    assert await asyncio.wait_for(execute_submitted(run_id, "second"), 5) == "completed"
    run = store.get_run(run_id)
    assert run.outputs == {"n": 3} and run.claimed_by == "second"
    assert CALLS == {"bump 1": 1, "bump 2": 2}  # step 1 was not run again; step 2 was in flight
    assert run.flow_metadata["resumed"][0]["previous_status"] == "running"
    assert not first.done()  # the "dead" worker never finished anything


async def test_a_flow_the_worker_cannot_import_fails_the_run_with_a_clear_message(inline):
    record = RunRecord(
        flow_name="ghost",
        execution_mode="background",
        flow_metadata={"flow_ref": "no_such_module_here:Ghost"},
    )
    await inline.store.create_run(record)
    assert await execute_submitted(record.id, "worker-1") == "failed"
    run = inline.store.get_run(record.id)
    assert run.status == "failed"
    assert "worker worker-1 cannot run flow 'ghost'" in run.error_message
    assert "no_such_module_here" in run.error_message


# -- waiting ------------------------------------------------------------------------------------
async def test_waiting_times_out_on_a_run_nobody_takes(inline):
    run_id = await Twice().submit({"n": 1}, executor="inline")
    with pytest.raises(TimeoutError, match=r"has not ended after 0\.1s; it is pending"):
        await asyncio.to_thread(wait_for_run_blocking, run_id, timeout=0.1)


def test_a_crashed_background_run_has_not_ended_while_workers_may_take_it_over():
    old = utcnow() - timedelta(hours=1)
    celery = RunRecord(
        flow_name="x",
        status=RunStatus.RUNNING.value,
        execution_mode="background",
        last_heartbeat=old,
        flow_metadata={"background": {"executor": "celery"}},
    )
    assert not run_has_ended(celery)
    local = celery.model_copy(update={"flow_metadata": {"background": {"executor": "local"}}})
    assert run_has_ended(local)  # its process died with it: nobody will resume it
    assert run_has_ended(celery.model_copy(update={"execution_mode": "sync"}))
    assert run_has_ended(celery.model_copy(update={"status": "failed"}))
