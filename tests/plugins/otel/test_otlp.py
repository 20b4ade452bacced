"""Spans exported over real OTLP/HTTP (protobuf) to a receiver on 127.0.0.1, from a process where the
application set no provider: the plugin configures the exporter from the standard OTEL_* variables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[3]


class Receiver(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.traces: list[ExportTraceServiceRequest] = []
        self.paths: list[str] = []


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.paths.append(self.path)
        if self.path == "/v1/traces":
            assert self.headers["Content-Type"] == "application/x-protobuf"
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            self.server.traces.append(request)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def received_spans(receiver: Receiver) -> list[tuple[object, object]]:
    """(resource, span) of every span the receiver decoded so far."""
    found = []
    for request in list(receiver.traces):
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                found.extend((resource.resource, span) for span in scope.spans)
    return found


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def run_flow_process(receiver: Receiver, tmp_path: Path, *args: str) -> dict[str, Any]:
    """``otlp_flow`` in a process of its own (OpenTelemetry's providers are set once per process),
    tracing on, the OTLP endpoint the receiver; what it printed of the providers and spans after."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOW_ENGINE_", "OTEL_"))}
    env.update(
        FLOW_ENGINE_OTEL="1",
        FLOW_ENGINE_DATABASE_URL="memory://",
        FLOW_ENGINE_DATA_DIR=str(tmp_path),
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{receiver.server_address[1]}",
        OTEL_SERVICE_NAME="otlp-test",
        PYTHONPATH=str(ROOT),
    )
    done = subprocess.run(
        [sys.executable, "-m", "tests.plugins.otel.otlp_flow", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_spans_arrive_over_otlp_http(receiver: Receiver, tmp_path: Path) -> None:
    # the plugin's own providers were never made the application's
    globals_after = run_flow_process(receiver, tmp_path)
    assert globals_after["tracer_provider"] == "ProxyTracerProvider"
    assert globals_after["meter_provider"] == "_ProxyMeterProvider"
    spans = {}
    services = set()
    for request in receiver.traces:
        for resource in request.resource_spans:
            services |= {
                a.value.string_value for a in resource.resource.attributes if a.key == "service.name"
            }
            for scope in resource.scope_spans:
                for span in scope.spans:
                    spans[span.name] = span
    assert services == {"otlp-test"}
    assert {"invoke_workflow exported", "step echo"} <= set(spans)
    [chat] = [s for name, s in spans.items() if name.startswith("chat ")]
    run, step = spans["invoke_workflow exported"], spans["step echo"]
    assert step.parent_span_id == run.span_id and chat.parent_span_id == step.span_id
    assert chat.trace_id == run.trace_id
    attrs = {a.key: a.value for a in chat.attributes}
    assert attrs["gen_ai.operation.name"].string_value == "chat"
    assert attrs["gen_ai.usage.output_tokens"].int_value > 0
    assert "/v1/metrics" in receiver.paths  # the metrics went the same way


def test_an_application_that_set_only_tracing_gets_spans_there_and_no_metrics_sent_anywhere(
    receiver: Receiver, tmp_path: Path
) -> None:
    """The application set a tracer provider and no meter provider: flow-engine's spans go to the
    application's provider, which stays the global one, and no metric exporter of flow-engine's own
    is made (nothing sent to the OTLP endpoint, which would otherwise be localhost:4318)."""
    after = run_flow_process(receiver, tmp_path, "tracing-only")
    assert after["same_tracer_provider"] is True
    assert {"invoke_workflow exported", "step echo"} <= set(after["spans_in_memory"])
    assert after["meter_provider"] == "_ProxyMeterProvider"
    assert receiver.paths == []  # neither spans (the application's provider has them) nor metrics
