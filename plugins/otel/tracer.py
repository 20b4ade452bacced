"""Spans and metrics of runs, steps and LLM calls; imported only when tracing is on.

Spans are kept by run and step id (the lifecycle hooks give ids, not a context), and each LLM call's
span is parented on its step's span (else its run's, else the caller's current span). The trace context
of a run's first start is kept in ``flow_metadata["otel"]``: a resumed run links to it.

A step's span, its calls' spans and their metric records are made after the step ends, with the
times they happened, in bursts: when 64 ended steps are held (of any run: fast steps, or many flows
at once), or half a second after the oldest ended, or when the run ends; sooner when something needs
the step's span (a child flow's parent, many calls in one step). After each litellm call the
OpenTelemetry SDK's code and data are out of the CPU's caches: its work for a step costs about twice
as much spread over the step as in one burst with other steps' (docs/performance.md, runs 11 and 12:
bursts of 8 steps saved 40-160 µs per traced step against making each span as it happened; bursts
of 64 save ~70 µs more than bursts of 8).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
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
# litellm's provider prefixes whose provider has a well-known gen_ai.provider.name; others keep
# litellm's name (the conventions' rule for a provider they do not list)
_PROVIDER_NAMES = {
    "bedrock": "aws.bedrock",
    "bedrock_converse": "aws.bedrock",
    "vertex_ai": "gcp.vertex_ai",
    "vertex_ai_beta": "gcp.vertex_ai",
    "gemini": "gcp.gemini",
    "azure": "azure.ai.openai",
    "azure_text": "azure.ai.openai",
    "azure_ai": "azure.ai.inference",
    "cohere_chat": "cohere",
    "watsonx": "ibm.watsonx.ai",
    "watsonx_text": "ibm.watsonx.ai",
    "xai": "x_ai",
    "mistral": "mistral_ai",
    "codestral": "mistral_ai",
    "text-completion-openai": "openai",
}
# the bucket boundaries the GenAI conventions give the two client histograms
_TOKEN_BUCKETS = [4.0**i for i in range(14)]  # 1, 4, 16, ... 67108864
_DURATION_BUCKETS = [0.01 * 2**i for i in range(14)]  # 0.01, 0.02, 0.04, ... 81.92 s
_SCOPE = "flow_engine"
_HELD_STEPS = 64  # ended steps' spans are made 64 at a time (or after _HOLD_SECONDS, or at the run's end)
_HOLD_SECONDS = 0.5
_MAX_HELD_CALLS = 16  # a step making more calls gets its span then, and its calls' spans as they end
_TRUE = {"1", "true", "yes", "on"}


def capture_content() -> bool:
    """The GenAI instrumentations' standard opt-in for prompt and answer content."""
    return os.environ.get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "").lower() in _TRUE


def _providers() -> tuple[Any, Any]:
    """The application's providers when it set them; else our own OTLP ones (never made global). An
    application that set only one of them chose what it exports: the other stays the API's no-op
    (it takes effect if the application sets it later), and nothing is sent to an endpoint it never
    configured."""
    tracer_provider = trace.get_tracer_provider()
    meter_provider = metrics.get_meter_provider()
    own_tracing = isinstance(tracer_provider, trace.ProxyTracerProvider)
    own_metrics = type(meter_provider).__name__ == "_ProxyMeterProvider"
    if not (own_tracing and own_metrics):  # the application's choice
        return tracer_provider, meter_provider
    if own_tracing:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "flow-engine")})
        sdk_provider = TracerProvider(resource=resource)
        sdk_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        tracer_provider = sdk_provider
    if os.environ.get("OTEL_METRICS_EXPORTER", "otlp") not in ("none", ""):
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        meter_provider = MeterProvider(metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter())])
    return tracer_provider, meter_provider


@dataclass(slots=True)
class _Run:
    """A run being traced: its span, current while the flow runs (``token`` undoes that), what was read
    once for it, and its open steps, innermost last."""

    span: Any
    context: Any  # the context holding its span: its steps' parent
    token: Any
    content: bool  # the content opt-in, read when it started
    steps: list[uuid.UUID] = field(default_factory=list)


@dataclass(slots=True)
class _Step:
    """A step whose span is made when it ends, or sooner when needed (``Tracer._span_of``)."""

    name: str
    attributes: dict[str, Any]
    parent: Any  # the context of its run's span (else the one it started in)
    start_ns: int
    span: Any = None
    calls: list[_Call] = field(default_factory=list)  # calls ended while the span was not made yet
    end_ns: int | None = None
    error: str | None = None  # the exception's class name: the span's error status
    calls_made: int = 0  # the calls it has made (structured-output re-asks are the 2nd, 3rd...)
    # its calls whose last attempt failed: when that attempt ended, and the call's index
    failed_attempts: dict[uuid.UUID, tuple[float, int | None]] = field(default_factory=dict)


@dataclass(slots=True)
class _Call:
    """One ended attempt of an LLM call, as little as can be kept at once: its span, attributes and
    metric records are made from it in the burst (``Tracer._emit``)."""

    info: Any  # the hook's LLMCallInfo (a new one per attempt)
    response: Any  # None when the attempt failed
    start_ns: int
    end_ns: int
    duration_s: float
    retry_wait_s: float | None = None
    call_index: int | None = None  # the step's 1st, 2nd... call (structured-output re-asks)
    error: str | None = None  # the exception's class name: the span's error status
    error_type: str | None = None
    input_messages: str | None = None  # JSON, only with content capture opted in


def split_model(model: str) -> tuple[str | None, str]:
    """``openai/gpt-4o-mini`` -> (``openai``, ``gpt-4o-mini``): litellm's provider prefix."""
    provider, sep, name = model.partition("/")
    return (provider, name) if sep else (None, model)


def provider_name(litellm_provider: str | None) -> str | None:
    """litellm's provider name as ``gen_ai.provider.name``: the conventions' well-known value for the
    providers they list (``bedrock`` -> ``aws.bedrock``), else litellm's own."""
    if not litellm_provider:
        return None
    return _PROVIDER_NAMES.get(litellm_provider, litellm_provider)


def _litellm_provider(model: str, api_base: str | None) -> str | None:
    """The provider litellm picks for a model named without one (``gpt-4o-mini``: openai)."""
    import litellm  # imported already: the call was made through it

    try:
        return str(litellm.get_llm_provider(model, api_base=api_base)[1])
    except Exception:
        return None


def _environment_base(provider: str) -> str | None:
    """litellm's per-provider base URL variable (``OPENAI_API_BASE``, ``OPENAI_BASE_URL``...)."""
    name = provider.upper()
    return os.environ.get(f"{name}_API_BASE") or os.environ.get(f"{name}_BASE_URL")


def input_messages(messages: list[Any]) -> list[dict[str, Any]]:
    """Chat messages as the GenAI conventions record them: a role and its parts."""
    return [_message(m) for m in messages]


def output_messages(choices: list[Any]) -> list[dict[str, Any]]:
    """The answer's choices as the GenAI conventions record output messages."""
    found = []
    for choice in choices:
        message = _message(getattr(choice, "message", None))
        found.append({**message, "finish_reason": getattr(choice, "finish_reason", None) or "stop"})
    return found


def _as_dict(value: Any) -> dict[str, Any]:
    """A message or tool call as a dict (litellm gives pydantic objects, callers dicts); {} else."""
    if isinstance(value, dict):
        return value
    dumped = value.model_dump() if hasattr(value, "model_dump") else None
    return dumped if isinstance(dumped, dict) else {}


def _message(value: Any) -> dict[str, Any]:
    message = _as_dict(value)
    role = message.get("role") or "assistant"
    content = message.get("content")
    parts: list[dict[str, Any]] = []
    if isinstance(content, str):
        parts.append({"type": "text", "content": content})
    elif isinstance(content, list):
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                parts.append({"type": "text", "content": part.get("text")})
            elif kind == "image_url":
                url = part.get("image_url")
                url = url.get("url") if isinstance(url, dict) else url
                parts.append({"type": "uri", "modality": "image", "uri": url})
            else:
                parts.append({"type": str(kind or "unknown"), "content": part})
    if role == "tool":
        parts = [{"type": "tool_call_response", "id": message.get("tool_call_id"), "response": content}]
    for tool_call in map(_as_dict, message.get("tool_calls") or []):
        function = _as_dict(tool_call.get("function"))
        parts.append(
            {
                "type": "tool_call",
                "id": tool_call.get("id"),
                "name": function.get("name"),
                "arguments": function.get("arguments"),
            }
        )
    return {"role": role, "parts": parts}


class Tracer:
    def __init__(self) -> None:
        tracer_provider, meter_provider = _providers()
        self.tracer = tracer_provider.get_tracer(_SCOPE)
        meter = meter_provider.get_meter(_SCOPE)
        self.token_usage = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Tokens used per LLM call.",
            explicit_bucket_boundaries_advisory=_TOKEN_BUCKETS,
        )
        self.duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="Duration of each LLM call attempt.",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self.ended_runs = meter.create_counter("flow_engine.runs", unit="{run}", description="Runs ended.")
        self.cost = meter.create_counter("flow_engine.llm.cost", unit="USD", description="LLM cost.")
        self.runs: dict[uuid.UUID, _Run] = {}
        self.steps: dict[uuid.UUID, _Step] = {}
        self.ended: deque[_Step] = deque()  # ended steps whose spans are not made yet
        self._timer_loop: asyncio.AbstractEventLoop | None = None  # the loop with a flush timer set
        # calls outside any step whose last attempt failed: when it ended and the call's index (a
        # step's own are on the step: they go with it); bounded, as a failed call may not be retried
        self.failed_attempts: dict[uuid.UUID, tuple[float, int | None]] = {}
        # (kind, model, api_base) -> metric attributes of its calls, and of its input and output token counts
        self._by_model: dict[
            tuple[str, str, str | None], tuple[dict[str, Any], dict[str, Any], dict[str, Any]]
        ] = {}
        self._servers: dict[str, dict[str, Any]] = {}
        # during a burst: the cost of its calls by model (one counter record each, not one per call)
        self._burst_costs: dict[str, tuple[float, Any]] | None = None

    # -- runs ----------------------------------------------------------------------------------
    async def flow_started(self, event: Any) -> None:
        meta = dict(event.metadata)  # as stored when the run started: no read of the store here
        first = meta.get("otel", {}).get("first")
        parent = self._parent_of_run(event, None if first else meta.get("otel", {}).get("submitted"))
        links = []
        if first:  # resumed: link to the first attempt's run span
            links.append(Link(_span_context(first), {"flow_engine.link": "resumed_from"}))
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_workflow",
            "gen_ai.workflow.name": event.flow_name,
            "flow_engine.flow.name": event.flow_name,
            "flow_engine.run.id": str(event.run_id),
        }
        if event.parent_run_id is not None:
            attributes["flow_engine.run.parent_id"] = str(event.parent_run_id)
        if event.user_id is not None:
            attributes["user.id"] = str(event.user_id)
        if event.max_cost is not None:
            attributes["flow_engine.budget.max_cost"] = event.max_cost
        if event.max_tokens is not None:
            attributes["flow_engine.budget.max_tokens"] = event.max_tokens
        span = self.tracer.start_span(
            f"invoke_workflow {event.flow_name}", context=parent, links=links, attributes=attributes
        )
        run_context = trace.set_span_in_context(span)
        # current while the flow runs: spans the flow's code or other instrumentation (an HTTP client's)
        # make nest under the run (the step and call spans are made after the fact: they cannot be)
        token = context.attach(run_context)
        self.runs[event.run_id] = _Run(span, run_context, token, capture_content())
        if not first:
            ctx = span.get_span_context()
            otel = {**meta.get("otel", {}), "first": _traceparent(ctx)}
            await get_engine().store.update_run(event.run_id, {"flow_metadata": {**meta, "otel": otel}})

    def _parent_of_run(self, event: Any, submitted: str | None) -> Any:
        """A child run's parent: the step that started it, else its parent run; a background run's
        first start: the submitter's span (``submitted``); else the current context's span."""
        parent = self.runs.get(event.parent_run_id) if event.parent_run_id is not None else None
        if parent is not None:
            step = self.steps.get(event.parent_step_id) if event.parent_step_id is not None else None
            return trace.set_span_in_context(self._span_of(step)) if step is not None else parent.context
        if submitted:
            return trace.set_span_in_context(trace.NonRecordingSpan(_span_context(submitted)))
        return None  # the current context: the application's span, if any

    def flow_ended(self, event: Any) -> None:
        """The run's end (``event.status``: completed, failed, cancelled or waiting)."""
        self.flush()
        status = event.status
        run = self.runs.pop(event.run_id, None)
        if status != "waiting":  # a waiting run has not ended: it is counted when it does
            self.ended_runs.add(
                1,
                {"flow_engine.flow.name": event.flow_name, "flow_engine.run.status": status},
                context=run.context if run is not None else None,
            )
        if run is None:
            return
        context.detach(run.token)
        # steps no hook ended: cut short by a cancellation (of the run, or of the step alone)
        for step_id in run.steps:
            step = self.steps.pop(step_id, None)
            if step is not None:
                step.attributes["flow_engine.step.status"] = "waiting" if status == "waiting" else "cancelled"
                step.end_ns = time.time_ns()
                self._end(step)
        span = run.span
        span.set_attribute("flow_engine.run.status", status)
        if event.total_tokens is not None:
            span.set_attribute("flow_engine.run.total_tokens", event.total_tokens)
        if event.total_cost is not None:
            span.set_attribute("flow_engine.run.total_cost", event.total_cost)
        if status == "failed" and event.error is not None:  # cancelled or waiting: not an error
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
        attributes = {
            "flow_engine.step.name": event.step_name,
            "flow_engine.step.type": event.step_type,
        }
        if event.step_key is not None:
            attributes["flow_engine.step.key"] = event.step_key
        if event.step_order is not None:
            attributes["flow_engine.step.order"] = event.step_order
        # its span may be made later, in another context: the parent is fixed now
        run = self.runs.get(event.run_id) if event.run_id is not None else None
        parent = run.context if run is not None else context.get_current()
        self.steps[event.step_id] = _Step(f"step {event.step_name}", attributes, parent, time.time_ns())
        if run is not None:
            run.steps.append(event.step_id)

    def _span_of(self, step: _Step) -> Any:
        """The step's span, made now if it was not (started when the step started), with the spans of
        the calls it held."""
        if step.span is None:
            step.span = self.tracer.start_span(
                step.name, context=step.parent, attributes=step.attributes, start_time=step.start_ns
            )
            for call in step.calls:
                self._emit(call, step.span)
            step.calls.clear()
        return step.span

    def step_ended(self, event: Any) -> None:
        step = self.steps.pop(event.step_id, None) if event.step_id else None
        if step is None:
            return
        run = self.runs.get(event.run_id) if event.run_id is not None else None
        if run is not None and event.step_id in run.steps:
            run.steps.remove(event.step_id)
        if event.error is not None:
            step.attributes["flow_engine.step.status"] = "failed"
            step.attributes["error.type"] = _error_type(event.error)
        else:
            metadata = getattr(event.result, "metadata", None) or {}
            step.attributes["flow_engine.step.status"] = "completed"
            if metadata.get("tokens_used") is not None:
                step.attributes["flow_engine.step.tokens"] = metadata["tokens_used"]
            if metadata.get("cost_estimate") is not None:
                step.attributes["flow_engine.step.cost"] = metadata["cost_estimate"]
        step.error = type(event.error).__name__ if event.error is not None else None
        step.end_ns = time.time_ns()
        if step.span is None and event.run_id is not None:  # made with the next few steps' spans
            self.ended.append(step)
            if len(self.ended) >= _HELD_STEPS:
                self.flush()
            else:
                self._flush_later()
            return
        self._end(step)

    def _end(self, step: _Step) -> None:
        if step.span is not None:  # made early: the attributes found since go on it now
            step.span.set_attributes(step.attributes)
        span = self._span_of(step)
        if step.error is not None:
            span.set_status(Status(StatusCode.ERROR, step.error))
        span.end(end_time=step.end_ns)

    def flush(self) -> None:
        """Make the spans (and metric records) of the ended steps held back. The cost counter gets one
        record per model for the whole burst (a counter's sum is what it reports)."""
        ended = self.ended
        if not ended:
            return
        costs: dict[str, tuple[float, Any]] = {}
        self._burst_costs = costs
        try:
            while ended:
                try:
                    step = ended.popleft()
                except IndexError:  # another thread took the last one
                    break
                self._end(step)
        finally:
            self._burst_costs = None
            for model, (total, measured) in costs.items():  # exemplar: the burst's last call of it
                self.cost.add(total, {"gen_ai.request.model": model}, context=measured)

    def _flush_later(self) -> None:
        """One timer at a time (one per loop, if steps end in several): it flushes once the oldest held
        step has waited ``_HOLD_SECONDS`` (a timer per batch would cut later batches short)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        if self._timer_loop is not loop:
            self._timer_loop = loop
            loop.call_later(_HOLD_SECONDS, self._on_timer, loop)

    def _on_timer(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer_loop is loop:
            self._timer_loop = None
        ended = self.ended
        if not ended:
            return
        waited = (time.time_ns() - (ended[0].end_ns or 0)) / 1e9
        if waited >= _HOLD_SECONDS * 0.9:
            self.flush()
        else:  # a batch went out meanwhile: wait for the oldest step held now
            self._timer_loop = loop
            loop.call_later(_HOLD_SECONDS - waited, self._on_timer, loop)

    # -- LLM calls -----------------------------------------------------------------------------
    def wrap_call(self, call: Any, send: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[Any]]:
        async def traced() -> Any:
            start_ns = time.time_ns()
            started = time.perf_counter()
            try:
                response = await send()
            except BaseException as exc:
                ended = time.perf_counter()
                record = self._call_record(call, None, start_ns, started, ended)
                self._remember_failed(call, ended, record.call_index)
                record.error, record.error_type = type(exc).__name__, _error_type(exc)
                self._ended(record)
                raise
            record = self._call_record(call, response, start_ns, started, time.perf_counter())
            self._ended(record)
            return response

        return traced

    def _call_record(self, call: Any, response: Any, start_ns: int, started: float, ended: float) -> _Call:
        """What must be taken when the attempt ends (``started``/``ended`` by the perf counter)."""
        record = _Call(call, response, start_ns, time.time_ns(), ended - started)
        step = self.steps.get(call.step_id) if call.step_id is not None else None
        if call.attempt > 1:  # a retry: the wait before it, and the index of the call it retries
            failed = step.failed_attempts if step is not None else self.failed_attempts
            previous = failed.pop(call.call_id, None)
            if previous is not None:
                record.retry_wait_s = round(started - previous[0], 6)
                record.call_index = previous[1]
        elif step is not None:
            step.calls_made += 1
            record.call_index = step.calls_made
        run = self.runs.get(call.run_id) if call.run_id is not None else None
        if run.content if run is not None else capture_content():
            request = (
                call.messages if call.messages is not None else [{"role": "user", "content": call.prompt}]
            )
            record.input_messages = json.dumps(input_messages(request), default=str)
        return record

    def _remember_failed(self, call: Any, ended: float, call_index: int | None) -> None:
        """A failed attempt, for its retry's span (wait, index): kept by its step, which forgets it
        when it ends; outside any step, the latest 1,024 calls'."""
        step = self.steps.get(call.step_id) if call.step_id is not None else None
        if step is not None:
            step.failed_attempts[call.call_id] = (ended, call_index)
            return
        failed = self.failed_attempts
        failed[call.call_id] = (ended, call_index)
        if len(failed) > 1024:
            del failed[next(iter(failed))]

    def _ended(self, record: _Call) -> None:
        """A call's span and metrics: held by its step until the step ends, else made now."""
        call = record.info
        step = self.steps.get(call.step_id) if call.step_id else None
        if step is not None:
            if step.span is None and len(step.calls) < _MAX_HELD_CALLS:
                step.calls.append(record)
                return
            self._emit(record, self._span_of(step))
        else:
            run = self.runs.get(call.run_id) if call.run_id is not None else None
            self._emit(record, run.span if run is not None else None)

    def _emit(self, record: _Call, parent: Any) -> None:
        """The call's span (parented on ``parent``) and metric records."""
        call = record.info
        metric_attributes, input_attributes, output_attributes = self._model_attributes(call)
        attributes = self._request_attributes(record, metric_attributes)
        duration_attributes = metric_attributes
        tokens: tuple[tuple[int, dict[str, Any]], ...] = ()
        cost = None
        if record.error_type is not None:
            attributes["error.type"] = record.error_type
            duration_attributes = {**metric_attributes, "error.type": record.error_type}
        else:
            hidden = getattr(record.response, "_hidden_params", None)  # read once: a pydantic private
            if not isinstance(hidden, dict):
                hidden = {}
            tokens, cost = _answer_attributes(
                attributes,
                record.response,
                hidden,
                input_attributes,
                output_attributes,
                record.input_messages,
            )
            if not call.api_base:
                self._server_of_answer(attributes, call, hidden)
        context = trace.set_span_in_context(parent) if parent is not None else None
        span = self.tracer.start_span(
            f"{metric_attributes['gen_ai.operation.name']} {metric_attributes['gen_ai.request.model']}",
            kind=SpanKind.CLIENT,
            context=context,
            attributes=attributes,
            start_time=record.start_ns,
        )
        if record.error is not None:
            span.set_status(Status(StatusCode.ERROR, record.error))
        span.end(end_time=record.end_ns)
        # the records' exemplars name the call's span: the current one now is the run's (or, on the
        # timer, the span of whichever run set it)
        measured = trace.set_span_in_context(span)
        self.duration.record(record.duration_s, duration_attributes, context=measured)
        for value, token_attributes in tokens:
            self.token_usage.record(value, token_attributes, context=measured)
        if cost is not None:
            model = metric_attributes["gen_ai.request.model"]
            costs = self._burst_costs
            if costs is not None:
                costs[model] = (costs[model][0] + cost if model in costs else cost, measured)
            else:
                self.cost.add(cost, {"gen_ai.request.model": model}, context=measured)

    def _model_attributes(self, call: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """The metric attributes of a model's calls and of its input and output tokens, made once per
        (kind, model): every call's span starts from them, every metric record uses them as they are."""
        key = (call.kind, call.model, call.api_base)
        found = self._by_model.get(key)
        if found is None:
            provider, model = split_model(call.model)
            attributes = {
                "gen_ai.operation.name": "chat" if call.kind == "completion" else "generate_content",
                "gen_ai.request.model": model,
            }
            provider = provider_name(provider or _litellm_provider(call.model, call.api_base))
            if provider:
                attributes["gen_ai.provider.name"] = provider
            found = self._by_model[key] = (
                attributes,
                {**attributes, "gen_ai.token.type": "input"},
                {**attributes, "gen_ai.token.type": "output"},
            )
        return found

    def _request_attributes(self, record: _Call, metric_attributes: dict[str, Any]) -> dict[str, Any]:
        call = record.info
        attributes = {
            **metric_attributes,
            "flow_engine.llm.attempt": call.attempt,
            "flow_engine.llm.call_id": str(call.call_id),
        }
        params = call.params
        for key, value in params.items():
            name = _PARAMS.get(key)
            if name is not None and isinstance(value, int | float | str):
                attributes[name] = value
        stop = params.get("stop")
        if stop:
            attributes["gen_ai.request.stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
        if call.kind != "completion":
            attributes["gen_ai.output.type"] = "image"
        elif params.get("response_format") is not None:
            attributes["gen_ai.output.type"] = "json"
        if call.api_base:
            attributes.update(self._server(call.api_base))
        if record.retry_wait_s is not None:
            attributes["flow_engine.llm.retry_wait_s"] = record.retry_wait_s
        if record.call_index is not None:
            attributes["flow_engine.llm.call_index"] = record.call_index
        if record.input_messages is not None:
            attributes["gen_ai.input.messages"] = record.input_messages
        return attributes

    def _server_of_answer(self, attributes: dict[str, Any], call: Any, hidden: dict[str, Any]) -> None:
        """A call given no ``api_base`` went where litellm sent it: the provider's base from the
        environment (``OPENAI_API_BASE``...), else the default litellm names in the answer's hidden
        parameters (which it names even when the environment sent the call elsewhere)."""
        named = hidden.get("api_base")
        if not isinstance(named, str) or not named:  # an in-process model (offline, scripted): no server
            return
        provider = hidden.get("custom_llm_provider") or split_model(call.model)[0]
        api_base = (_environment_base(provider) if provider else None) or named
        attributes.update(self._server(api_base))

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


def _answer_attributes(
    found: dict[str, Any],
    response: Any,
    hidden: dict[str, Any],
    input_attributes: dict[str, Any],
    output_attributes: dict[str, Any],
    content: str | None,
) -> tuple[tuple[tuple[int, dict[str, Any]], ...], float | None]:
    """The answer's attributes added to ``found``; its token counts (with their metric attributes) and
    cost (from litellm's ``hidden`` parameters of the answer)."""
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
    tokens = []
    usage = getattr(response, "usage", None)
    if usage is not None:
        for token_attributes, field_name, name in (
            (input_attributes, "prompt_tokens", "gen_ai.usage.input_tokens"),
            (output_attributes, "completion_tokens", "gen_ai.usage.output_tokens"),
        ):
            value = getattr(usage, field_name, None)
            if isinstance(value, int):
                found[name] = value
                tokens.append((value, token_attributes))
    cost = hidden.get("response_cost")
    if isinstance(cost, int | float):
        found["flow_engine.llm.cost"] = cost
    else:
        cost = None
    if content is not None and choices:
        found["gen_ai.output.messages"] = json.dumps(output_messages(choices), default=str)
    return tuple(tokens), cost


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
