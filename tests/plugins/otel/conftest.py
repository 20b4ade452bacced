"""The application's providers for the whole session (OpenTelemetry sets a global provider once):
spans to an in-memory exporter, metrics to an in-memory reader; each test starts with none."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

_EXPORTER = InMemorySpanExporter()
# delta temporality: each collection holds only what was measured since the previous one
_READER = InMemoryMetricReader(
    preferred_temporality={Counter: AggregationTemporality.DELTA, Histogram: AggregationTemporality.DELTA}
)
_installed = False


def _install() -> None:
    global _installed
    if not _installed:
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(provider)
        metrics.set_meter_provider(MeterProvider(metric_readers=[_READER]))
        _installed = True


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    _install()
    _EXPORTER.clear()
    _READER.get_metrics_data()  # drop what earlier tests measured
    yield _EXPORTER


@pytest.fixture
def metric_reader() -> InMemoryMetricReader:
    _install()
    return _READER


def points(reader: InMemoryMetricReader, name: str | None) -> list[Any]:
    """(metric name, data point) of metric ``name`` (every one if None) since the previous collection."""
    data = reader.get_metrics_data()
    found = []
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if name is None or metric.name == name:
                    found.extend((metric.name, p) for p in metric.data.data_points)
    return found
