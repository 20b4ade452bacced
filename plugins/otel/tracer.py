"""Spans and metrics of runs, steps and LLM calls; imported only when tracing is on.

Spans are kept by run and step id (the lifecycle hooks give ids, not a context), and each LLM call's
span is parented on its step's span (else its run's, else the caller's current span). The trace context
of a run's first start is kept in ``flow_metadata["otel"]``: a resumed run links to it.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import context, metrics, trace
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from flow_engine.plugin import get_engine

_PARAMS = {
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
    "top_k": "gen_ai.request.top_k",
    "max_tokens": "gen_ai.request.max_tokens",
    "max_completion_tokens": "gen_ai.request.max_tokens",
    "frequency_penalty": "gen_ai.request.frequency_penalty",
    "presence_penalty": "gen_ai.request.presence_penalty",
    "seed": "gen_ai.request.seed",
    "n": "gen_ai.request.choice.count",
}
_SCOPE = "flow_engine"
_TRUE = {"1", "true", "yes", "on"}


def capture_content() -> bool:
    """The GenAI instrumentations' standard opt-in for prompt and answer content."""
    return os.environ.get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "").lower() in _TRUE


def _providers() -> tuple[Any, Any]:
    """The application's providers when it set them; else our own OTLP ones (never made global)."""
    tracer_provider = trace.get_tracer_provider()
    if isinstance(tracer_provider, trace.ProxyTracerProvider):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "flow-engine")})
        sdk_provider = TracerProvider(resource=resource)
        sdk_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        tracer_provider = sdk_provider
    meter_provider = metrics.get_meter_provider()
    if type(meter_provider).__name__ == "_ProxyMeterProvider" and os.environ.get(
        "OTEL_METRICS_EXPORTER", "otlp"
    ) not in ("none", ""):
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        meter_provider = MeterProvider(metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter())])
    return tracer_provider, meter_provider


def split_model(model: str) -> tuple[str | None, str]:
    """``openai/gpt-4o-mini`` -> (``openai``, ``gpt-4o-mini``): litellm's provider prefix."""
    provider, sep, name = model.partition("/")
    return (provider, name) if sep else (None, model)


class Tracer:
    def __init__(self) -> None:
        tracer_provider, meter_provider = _providers()
        self.tracer = tracer_provider.get_tracer(_SCOPE)
        meter = meter_provider.get_meter(_SCOPE)
        self.token_usage = meter.create_histogram(
            "gen_ai.client.token.usage", unit="{token}", description="Tokens used per LLM call."
        )
        self.duration = meter.create_histogram(
            "gen_ai.client.operation.duration", unit="s", description="Duration of each LLM call attempt."
        )
        self.runs = meter.create_counter("flow_engine.runs", unit="{run}", description="Runs ended.")
        self.cost = meter.create_counter("flow_engine.llm.cost", unit="USD", description="LLM cost.")
        self.run_spans: dict[uuid.UUID, Any] = {}
        self.step_spans: dict[uuid.UUID, Any] = {}
        self.open_steps: dict[uuid.UUID, list[Any]] = {}  # run id -> its open step spans, innermost last
        self.calls_in_step: dict[uuid.UUID, int] = {}
        self.last_attempt_end: dict[uuid.UUID, float] = {}
        # (kind, model) -> metric attributes of its calls, and of its input and output token counts
        self._by_model: dict[tuple[str, str], tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = {}
        self._servers: dict[str, dict[str, Any]] = {}

    # -- runs ----------------------------------------------------------------------------------
    async def flow_started(self, event: Any) -> None:
        store = get_engine().store
        run = store.get_run(event.run_id)
        meta = dict((run.flow_metadata if run else None) or {})
        parent = self._parent_of_run(event.parent_run_id, meta)
        links = []
        first = meta.get("otel", {}).get("first")
        if first:  # resumed: link to the first attempt's run span
            links.append(Link(_span_context(first), {"flow_engine.link": "resumed_from"}))
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_workflow",
            "flow_engine.flow.name": event.flow_name,
            "flow_engine.run.id": str(event.run_id),
        }
        if event.parent_run_id is not None:
            attributes["flow_engine.run.parent_id"] = str(event.parent_run_id)
        if run is not None:
            if run.user_id is not None:
                attributes["user.id"] = str(run.user_id)
            options = meta.get("run_options") or {}
            for key in ("max_cost", "max_tokens"):
                if options.get(key) is not None:
                    attributes[f"flow_engine.budget.{key}"] = options[key]
        span = self.tracer.start_span(
            f"invoke_workflow {event.flow_name}", context=parent, links=links, attributes=attributes
        )
        self.run_spans[event.run_id] = span
        if not first and run is not None:
            ctx = span.get_span_context()
            otel = {**meta.get("otel", {}), "first": _traceparent(ctx)}
            await store.update_run(event.run_id, {"flow_metadata": {**meta, "otel": otel}})

    def _parent_of_run(self, parent_run_id: uuid.UUID | None, meta: dict[str, Any]) -> Any:
        if parent_run_id is not None:
            steps = self.open_steps.get(parent_run_id)
            span = steps[-1] if steps else self.run_spans.get(parent_run_id)
            if span is not None:
                return trace.set_span_in_context(span)
        submitted = meta.get("otel", {}).get("submitted")
        if submitted:  # a background run: the submitter's span is its parent
            return trace.set_span_in_context(trace.NonRecordingSpan(_span_context(submitted)))
        return None  # the current context: the application's span, if any

    def flow_ended(self, event: Any, status: str) -> None:
        span = self.run_spans.pop(event.run_id, None)
        self.open_steps.pop(event.run_id, None)
        self.runs.add(1, {"flow_engine.flow.name": event.flow_name, "flow_engine.run.status": status})
        if span is None:
            return
        run = get_engine().store.get_run(event.run_id)
        span.set_attribute("flow_engine.run.status", status)
        if run is not None:
            span.set_attribute("flow_engine.run.total_tokens", run.total_tokens)
            span.set_attribute("flow_engine.run.total_cost", run.total_cost)
        if event.error is not None:
            _record_error(span, event.error)
        span.end()

    def submit_metadata(self) -> dict[str, Any] | None:
        """The submitter's current span, for the worker's run span to use as its parent."""
        ctx = trace.get_current_span().get_span_context()
        return {"otel": {"submitted": _traceparent(ctx)}} if ctx.is_valid else None

    # -- steps ---------------------------------------------------------------------------------
    def step_started(self, event: Any) -> None:
        if event.step_id is None:
            return
        run_span = self.run_spans.get(event.run_id) if event.run_id else None
        parent = trace.set_span_in_context(run_span) if run_span is not None else None
        attributes = {
            "flow_engine.step.name": event.step_name,
            "flow_engine.step.type": event.step_type,
        }
        if event.step_key is not None:
            attributes["flow_engine.step.key"] = event.step_key
        if event.step_order is not None:
            attributes["flow_engine.step.order"] = event.step_order
        span = self.tracer.start_span(f"step {event.step_name}", context=parent, attributes=attributes)
        self.step_spans[event.step_id] = span
        if event.run_id is not None:
            self.open_steps.setdefault(event.run_id, []).append(span)

    def step_ended(self, event: Any) -> None:
        span = self.step_spans.pop(event.step_id, None) if event.step_id else None
        self.calls_in_step.pop(event.step_id, None)
        if span is None:
            return
        steps = self.open_steps.get(event.run_id) or []
        if span in steps:
            steps.remove(span)
        metadata = getattr(event.result, "metadata", None) or {}
        if event.error is not None:
            span.set_attribute("flow_engine.step.status", "failed")
            _record_error(span, event.error)
        else:
            found: dict[str, Any] = {"flow_engine.step.status": "completed"}
            if metadata.get("tokens_used") is not None:
                found["flow_engine.step.tokens"] = metadata["tokens_used"]
            if metadata.get("cost_estimate") is not None:
                found["flow_engine.step.cost"] = metadata["cost_estimate"]
            span.set_attributes(found)
        span.end()

    # -- LLM calls -----------------------------------------------------------------------------
    def wrap_call(self, call: Any, send: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[Any]]:
        async def traced() -> Any:
            span, attributes, content = self._start_call(call)
            started = time.perf_counter()
            # the call span is current while litellm runs (its own instrumentation nests under it);
            # attach/detach rather than ``use_span``, whose generator and exception handling the
            # lines below already do
            token = context.attach(trace.set_span_in_context(span))
            try:
                response = await send()
            except BaseException as exc:
                error_type = _error_type(exc)
                _record_error(span, exc)
                self.duration.record(time.perf_counter() - started, {**attributes, "error.type": error_type})
                self.last_attempt_end[call.call_id] = time.perf_counter()
                span.end()
                raise
            finally:
                context.detach(token)
            self.last_attempt_end.pop(call.call_id, None)
            self.duration.record(time.perf_counter() - started, attributes)
            self._finish_call(span, call, response, content)
            span.end()
            return response

        return traced

    def _model_attributes(self, call: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """The metric attributes of a model's calls and of its input and output tokens, made once per
        (kind, model): every call's span starts from them, every metric record uses them as they are."""
        key = (call.kind, call.model)
        found = self._by_model.get(key)
        if found is None:
            provider, model = split_model(call.model)
            attributes = {
                "gen_ai.operation.name": "chat" if call.kind == "completion" else call.kind,
                "gen_ai.request.model": model,
            }
            if provider:
                attributes["gen_ai.provider.name"] = provider
            found = self._by_model[key] = (
                attributes,
                {**attributes, "gen_ai.token.type": "input"},
                {**attributes, "gen_ai.token.type": "output"},
            )
        return found

    def _start_call(self, call: Any) -> tuple[Any, dict[str, Any], bool]:
        metric_attributes = self._model_attributes(call)[0]
        operation = metric_attributes["gen_ai.operation.name"]
        attributes = {
            **metric_attributes,
            "flow_engine.llm.attempt": call.attempt,
            "flow_engine.llm.call_id": str(call.call_id),
        }
        params = call.params
        for key, name in _PARAMS.items():
            value = params.get(key)
            if isinstance(value, int | float | str):
                attributes[name] = value
        stop = params.get("stop")
        if stop:
            attributes["gen_ai.request.stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
        if params.get("response_format") is not None:
            attributes["gen_ai.output.type"] = "json"
        if call.api_base:
            attributes.update(self._server(call.api_base))
        if call.attempt > 1:
            ended = self.last_attempt_end.pop(call.call_id, None)
            if ended is not None:  # the retry wait before this attempt
                attributes["flow_engine.llm.retry_wait_s"] = round(time.perf_counter() - ended, 6)
        elif call.step_id is not None:  # structured-output re-asks are the step's 2nd, 3rd... call
            index = self.calls_in_step.get(call.step_id, 0) + 1
            self.calls_in_step[call.step_id] = index
            attributes["flow_engine.llm.call_index"] = index
        content = capture_content()
        if content:
            request = (
                call.messages if call.messages is not None else [{"role": "user", "content": call.prompt}]
            )
            attributes["gen_ai.input.messages"] = json.dumps(request, default=str)
        parent = self.step_spans.get(call.step_id) if call.step_id else None
        if parent is None and call.run_id is not None:
            parent = self.run_spans.get(call.run_id)
        parent_context = trace.set_span_in_context(parent) if parent is not None else None
        span = self.tracer.start_span(
            f"{operation} {metric_attributes['gen_ai.request.model']}",
            kind=SpanKind.CLIENT,
            context=parent_context,
            attributes=attributes,
        )
        return span, metric_attributes, content

    def _server(self, api_base: str) -> dict[str, Any]:
        found = self._servers.get(api_base)
        if found is None:
            url = urlsplit(api_base)
            found = {}
            if url.hostname:
                found["server.address"] = url.hostname
                found["server.port"] = url.port or (443 if url.scheme == "https" else 80)
            self._servers[api_base] = found
        return found

    def _finish_call(self, span: Any, call: Any, response: Any, content: bool) -> None:
        """The answer's attributes, set on the span at once, and the token and cost metrics."""
        found: dict[str, Any] = {}
        response_model = getattr(response, "model", None)
        if response_model:
            found["gen_ai.response.model"] = response_model
        response_id = getattr(response, "id", None)
        if response_id:
            found["gen_ai.response.id"] = response_id
        choices = getattr(response, "choices", None) or []
        reasons = [c.finish_reason for c in choices if getattr(c, "finish_reason", None)]
        if reasons:
            found["gen_ai.response.finish_reasons"] = reasons
        usage = getattr(response, "usage", None)
        if usage is not None:
            _, input_attributes, output_attributes = self._model_attributes(call)
            for token_attributes, field, name in (
                (input_attributes, "prompt_tokens", "gen_ai.usage.input_tokens"),
                (output_attributes, "completion_tokens", "gen_ai.usage.output_tokens"),
            ):
                value = getattr(usage, field, None)
                if isinstance(value, int):
                    found[name] = value
                    self.token_usage.record(value, token_attributes)
        hidden = getattr(response, "_hidden_params", None) or {}
        cost = hidden.get("response_cost") if isinstance(hidden, dict) else None
        if isinstance(cost, int | float):
            found["flow_engine.llm.cost"] = cost
            model = self._model_attributes(call)[0]["gen_ai.request.model"]
            self.cost.add(cost, {"gen_ai.request.model": model})
        if content and choices:
            answers = [{"role": "assistant", "content": getattr(c.message, "content", None)} for c in choices]
            found["gen_ai.output.messages"] = json.dumps(answers, default=str)
        span.set_attributes(found)


def _error_type(exc: BaseException) -> str:
    status = getattr(exc, "status_code", None)
    return str(status) if isinstance(status, int) else type(exc).__qualname__


def _record_error(span: Any, exc: BaseException) -> None:
    span.set_attribute("error.type", _error_type(exc))
    span.set_status(Status(StatusCode.ERROR, type(exc).__name__))


def _traceparent(ctx: SpanContext) -> str:
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def _span_context(traceparent: str) -> SpanContext:
    _version, trace_id, span_id, flags = traceparent.split("-")
    return SpanContext(
        int(trace_id, 16), int(span_id, 16), is_remote=True, trace_flags=TraceFlags(int(flags, 16))
    )
