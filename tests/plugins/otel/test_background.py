"""A run submitted in the background carries its trace context to a real Celery worker (Redis,
PostgreSQL, the fake server): the worker's spans, exported over OTLP to a receiver of this test, join
the submitter's trace under the span that submitted it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest
from opentelemetry import trace

from flow_engine import configure
from tests.fake_openai_server import API_KEY
from tests.plugins.celery.services import TIMINGS, Deployment, deployment
from tests.plugins.celery.worker_flows import Questions

from .test_otlp import Receiver, received_spans

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[Deployment]:
    worker_env = {
        **TIMINGS,
        "FLOW_ENGINE_OTEL": "1",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.server_address[1]}",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_SERVICE_NAME": "flow-worker",
    }
    with deployment(tmp_path_factory.mktemp("otel-celery"), timings=worker_env) as setup:
        yield setup


async def test_a_background_run_joins_the_submitters_trace(cluster, receiver, spans, tmp_path):
    cluster.start_workers(1, concurrency=4)
    configure(
        database_url=cluster.db_url,
        data_dir=tmp_path / "data",
        broker_url=cluster.broker_url,
        executor="celery",
        celery_queue=cluster.prefix,
        celery_key_prefix=f"{cluster.prefix}:",
        model="openai/gpt-4o-mini",
        api_base=cluster.fake.base_url,
        api_key=API_KEY,
        otel=True,
    )
    with trace.get_tracer("the-submitter").start_as_current_span("submit questions") as submitter:
        run_id = await Questions().submit({"topic": "tracing", "count": 2})
    stored = cluster.store.get_run(run_id)
    assert stored.flow_metadata["otel"]["submitted"].split("-")[1] == f"{submitter.context.trace_id:032x}"

    def worker_spans():
        found = [
            s for _r, s in received_spans(receiver) if s.trace_id == submitter.context.trace_id.to_bytes(16)
        ]
        chats = [s for s in found if s.name.startswith("chat ")]
        ended = any(s.name == "invoke_workflow celery_questions" for s in found)  # it ends last
        return found if len(chats) == 2 and ended else None

    deadline = time.monotonic() + 120
    while (found := worker_spans()) is None:
        assert time.monotonic() < deadline, (
            f"no worker spans: {[s.name for _r, s in received_spans(receiver)]}"
        )
        await asyncio.sleep(0.2)
    names = {s.name: s for s in found}
    run = names["invoke_workflow celery_questions"]
    assert run.parent_span_id == submitter.context.span_id.to_bytes(8)
    run_attrs = {a.key: a.value.string_value for a in run.attributes}
    assert run_attrs["flow_engine.run.id"] == str(run_id)
    steps = [s for s in found if s.name == "step ask"]
    assert len(steps) == 2 and all(s.parent_span_id == run.span_id for s in steps)
    services = {
        a.value.string_value
        for r, _s in received_spans(receiver)
        for a in r.attributes
        if a.key == "service.name"
    }
    assert "flow-worker" in services
