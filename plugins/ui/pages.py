"""What each page shows, read from the store contract (``RunStore``) and nothing else.

Every function here is synchronous (store reads are): the app runs them in a worker thread. Records
stay records; the templates format them. The JSON API mirrors ``flow runs --json`` / ``flow show
--json``: a run's ``status`` is the status a person is shown (a running run whose heartbeat stopped
is ``crashed``, with ``"stale": true``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from flow_engine.errors import NotFoundError
from flow_engine.plugin import (
    LLMRequestRecord,
    RunFilter,
    RunRecord,
    RunStatus,
    RunStore,
    StepRecord,
    UsageError,
)
from flow_engine.storage import utcnow

from . import format as fmt

PAGE_SIZES = (20, 50, 100, 200)
DEFAULT_PAGE_SIZE = 50
MAX_CHILDREN = 500  # child runs listed per run; a flow fanning out wider is summarised
MAX_DEPTH = 20
LIVE = (RunStatus.RUNNING.value, RunStatus.PENDING.value)  # statuses a run page follows live


# -- the runs list ------------------------------------------------------------------------------
@dataclass
class RunQuery:
    """The runs page's filters and page, parsed from the query string (``form`` echoes them back)."""

    where: RunFilter
    limit: int
    offset: int
    form: dict[str, str]


def _date(text: str, name: str, *, end: bool) -> datetime:
    """``YYYY-MM-DD`` (the whole day) or an ISO date-time; naive times are UTC."""
    text = text.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return start + timedelta(days=1) if end else start
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{name} '{text}' is not a date (YYYY-MM-DD) or an ISO date-time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _int(text: str | None, name: str, default: int, low: int, high: int) -> int:
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"{name} '{text}' is not a whole number") from None
    if not low <= value <= high:
        raise UsageError(f"{name} must be between {low} and {high}, not {value}")
    return value


def parse_query(params: Any, stale_before: datetime) -> RunQuery:
    """Filters from ``flow``, ``status``, ``user``, ``from``, ``to`` (inclusive day or exact time),
    ``limit`` and ``offset``; a bad value raises ``UsageError`` naming it."""
    form = {k: str(params.get(k, "")).strip() for k in ("flow", "status", "user", "from", "to")}
    statuses = {s.value for s in RunStatus}
    if form["status"] and form["status"] not in statuses:
        raise UsageError(f"status '{form['status']}' is not one of {', '.join(sorted(statuses))}")
    user_id = None
    if form["user"]:
        try:
            user_id = uuid.UUID(form["user"])
        except ValueError:
            raise UsageError(f"user '{form['user']}' is not a user id (a UUID)") from None
    created_from = _date(form["from"], "from", end=False) if form["from"] else None
    created_until = _date(form["to"], "to", end=True) if form["to"] else None
    limit = _int(params.get("limit"), "limit", DEFAULT_PAGE_SIZE, 1, 1000)
    offset = _int(params.get("offset"), "offset", 0, 0, 10**12)
    where = RunFilter(
        flow_name=form["flow"] or None,
        status=form["status"] or None,
        user_id=user_id,
        created_from=created_from,
        created_until=created_until,
        stale_before=stale_before,
    )
    form["limit"] = str(limit)
    return RunQuery(where, limit, offset, form)


def shown_status(run: RunRecord, stale_before: datetime) -> str:
    return RunFilter(stale_before=stale_before).shown_status(run)


@dataclass
class RunRow:
    run: RunRecord
    status: str
    duration_ms: int | None
    running: bool


def run_duration_ms(run: RunRecord, status: str, now: datetime) -> int | None:
    """Stored run time; for a live run the time so far; for a dead one, until its last heartbeat."""
    if run.execution_time_ms is not None:
        return run.execution_time_ms
    if run.started_at is None:
        return None
    if status == RunStatus.RUNNING.value:
        return int((now - run.started_at).total_seconds() * 1000)
    if status == RunStatus.CRASHED.value and run.last_heartbeat is not None:
        return max(0, int((run.last_heartbeat - run.started_at).total_seconds() * 1000))
    return None


def run_rows(runs: list[RunRecord], stale_before: datetime) -> list[RunRow]:
    now = utcnow()
    rows = []
    for run in runs:
        status = shown_status(run, stale_before)
        rows.append(RunRow(run, status, run_duration_ms(run, status, now), status == "running"))
    return rows


def list_page(store: RunStore, query: RunQuery) -> tuple[list[RunRow], bool]:
    """One page of runs, and whether older ones follow (one extra row read, no count)."""
    runs = store.find_runs(query.where, limit=query.limit + 1, offset=query.offset)
    assert query.where.stale_before is not None
    return run_rows(runs[: query.limit], query.where.stale_before), len(runs) > query.limit


def totals_json(store: RunStore, where: RunFilter) -> dict[str, Any]:
    totals = store.run_totals(where)
    return {
        "runs": totals.runs,
        "total_tokens": totals.total_tokens,
        "total_cost": totals.total_cost,
        "unpriced_calls": totals.unpriced_calls,
        "execution_time_ms": totals.execution_time_ms,
        "cost": fmt.cost(totals.total_cost, totals.unpriced_calls),
    }


# -- JSON like the CLI's ------------------------------------------------------------------------
def run_json(run: RunRecord, stale_before: datetime) -> dict[str, Any]:
    """``flow runs --json``'s shape (its cost fields included), with this viewer's staleness threshold."""
    from flow_engine.cli.format import json_cost

    data = run.model_dump(mode="json")
    data["status"] = shown_status(run, stale_before)
    data["stale"] = run.status == RunStatus.RUNNING.value and data["status"] == RunStatus.CRASHED.value
    data.update(json_cost(run.total_cost, run.unpriced_calls))
    return data


def request_json(request: LLMRequestRecord) -> dict[str, Any]:
    data = request.model_dump(mode="json")
    data["request_params"] = fmt.without_secrets(data["request_params"])
    return data


def children_of(store: RunStore, run_id: uuid.UUID) -> list[RunRecord]:
    children = store.find_runs(RunFilter(parent_run_id=run_id), limit=MAX_CHILDREN)
    return sorted(children, key=lambda r: (r.created_at, r.id.hex))


def tree_json(store: RunStore, run: RunRecord, stale_before: datetime, depth: int = 0) -> dict[str, Any]:
    """The shape of ``flow show --json``: run, steps, llm_requests, children (recursively)."""
    children = children_of(store, run.id) if depth < MAX_DEPTH else []
    return {
        "run": run_json(run, stale_before),
        "steps": [s.model_dump(mode="json") for s in store.list_steps(run.id)],
        "llm_requests": [request_json(r) for r in store.list_llm_requests(flow_run_id=run.id)],
        "children": [tree_json(store, c, stale_before, depth + 1) for c in children],
    }


# -- one run ------------------------------------------------------------------------------------
@dataclass
class StepView:
    step: StepRecord
    model: str | None
    cost: str
    duration_ms: int | None
    left: float  # the timeline bar: where it starts and how wide it is, in % of the run's span
    width: float
    calls: int


@dataclass
class ChildView:
    row: RunRow
    children: list[ChildView] = field(default_factory=list)


@dataclass
class RunView:
    run: RunRecord
    status: str
    duration_ms: int | None
    steps: list[StepView]
    children: list[ChildView]
    more_children: bool
    parent: RunRecord | None
    budget: dict[str, Any]
    loose_calls: list[LLMRequestRecord]  # LLM calls of the run made outside any step
    can_cancel: bool
    can_resume: bool
    resume_note: str | None
    wait: WaitView | None = None  # what the run (or a child run of it) waits for a person to answer

    @property
    def live(self) -> bool:
        return self.status in LIVE


def _step_cost(step: StepRecord) -> str:
    unpriced = (step.step_metadata or {}).get("unpriced_calls") or 0
    if step.cost_estimate is None:
        return "unknown"
    return fmt.cost(step.cost_estimate, int(unpriced))


def _timeline(run: RunRecord, steps: list[StepRecord], now: datetime) -> list[StepView]:
    spans = []
    for step in steps:
        start = step.created_at
        if step.execution_time_ms is not None:
            ms: int | None = step.execution_time_ms
        elif step.completed_at is not None:
            ms = int((step.completed_at - start).total_seconds() * 1000)
        elif step.status == RunStatus.RUNNING.value:
            ms = int((now - start).total_seconds() * 1000)
        else:
            ms = None
        spans.append((start, ms))
    origin = min([run.started_at or run.created_at, *(s for s, _ in spans)])
    ends = [s + timedelta(milliseconds=ms or 0) for s, ms in spans]
    if run.completed_at is not None:
        ends.append(run.completed_at)
    total = max([1.0, *((end - origin).total_seconds() * 1000 for end in ends)])
    views = []
    for step, (start, ms) in zip(steps, spans, strict=True):
        left = (start - origin).total_seconds() * 1000 / total * 100
        width = (ms or 0) / total * 100
        meta = step.step_metadata or {}
        views.append(
            StepView(
                step=step,
                model=meta.get("model"),
                cost=_step_cost(step),
                duration_ms=ms,
                left=round(max(0.0, min(left, 100.0)), 2),
                width=round(max(0.3, min(width, 100.0 - left)), 2),
                calls=int(meta.get("llm_calls") or (1 if step.llm_request_id else 0)),
            )
        )
    return views


def _child_tree(store: RunStore, run_id: uuid.UUID, stale_before: datetime, depth: int) -> list[ChildView]:
    if depth >= MAX_DEPTH:
        return []
    children = children_of(store, run_id)
    return [
        ChildView(row, _child_tree(store, row.run.id, stale_before, depth + 1))
        for row in run_rows(children, stale_before)
    ]


def _budget(run: RunRecord) -> dict[str, Any]:
    meta = run.flow_metadata or {}
    found: dict[str, Any] = {}
    for source in (meta.get("background") or {}, meta.get("run_options") or {}):
        for key in ("max_cost", "max_tokens", "model", "executor"):
            if source.get(key) is not None:
                found[key] = source[key]
    return found


def _resume_check(store: RunStore, run: RunRecord, status: str) -> str | None:
    """Why a run cannot be resumed from here, in the words of ``flow resume`` (None: it can)."""
    if run.parent_run_id is not None:
        return "a child run is resumed through its root run"
    if status == RunStatus.COMPLETED.value:
        return None
    if status not in (RunStatus.FAILED.value, RunStatus.CRASHED.value, RunStatus.CANCELLED.value):
        return "only a failed, crashed or cancelled run can be resumed"
    return None


def run_view(store: RunStore, run: RunRecord, stale_before: datetime) -> RunView:
    now = utcnow()
    status = shown_status(run, stale_before)
    steps = store.list_steps(run.id)
    children = _child_tree(store, run.id, stale_before, 0)
    loose = [r for r in store.list_llm_requests(flow_run_id=run.id) if r.step_run_id is None]
    parent = store.get_run(run.parent_run_id) if run.parent_run_id is not None else None
    note = _resume_check(store, run, status)
    resumable = status in (RunStatus.FAILED.value, RunStatus.CRASHED.value, RunStatus.CANCELLED.value)
    return RunView(
        run=run,
        status=status,
        duration_ms=run_duration_ms(run, status, now),
        steps=_timeline(run, steps, now),
        children=children,
        more_children=len(children) >= MAX_CHILDREN,
        parent=parent,
        budget=_budget(run),
        loose_calls=loose,
        can_cancel=status in (RunStatus.RUNNING.value, RunStatus.PENDING.value, RunStatus.CRASHED.value),
        can_resume=resumable and run.parent_run_id is None,
        resume_note=note if resumable else None,
        wait=wait_view(store, run, steps) if status == RunStatus.WAITING.value else None,
    )


# -- a run waiting for a person -----------------------------------------------------------------
@dataclass
class AnswerField:
    """One field of the answer's form, from the wait's JSON schema: ``widget`` is ``text``, ``number``,
    ``checkbox``, ``select`` (an enum) or ``json`` (anything else, typed as JSON)."""

    name: str
    title: str
    widget: str
    required: bool
    description: str | None = None
    options: list[str] = field(default_factory=list)
    step: str = "any"  # a number field's step: 1 for an integer
    default: Any = None  # the text shown at first (checkbox: True/False)
    kind: dict[str, Any] = field(default_factory=dict)  # its own schema ($ref followed, null dropped)


@dataclass
class WaitView:
    run: RunRecord  # the run that waits: this one, or a child run of it
    step: StepRecord
    name: str
    prompt: str | None
    since: datetime
    deadline: datetime | None
    fields: list[AnswerField]


def wait_view(store: RunStore, run: RunRecord, steps: list[StepRecord] | None = None) -> WaitView | None:
    """What ``run`` waits for (``steps``: its steps, if already read), itself or through a child run."""
    from flow_engine.human_input import waiting_step
    from flow_engine.respond import waiting_for

    own = waiting_step(steps) if steps is not None else None
    found = (run, own) if own is not None else waiting_for(run, store)
    if found is None:
        return None
    waiter, step = found
    question = step.inputs or {}
    deadline = question.get("deadline")
    return WaitView(
        run=waiter,
        step=step,
        name=step.step_key,
        prompt=question.get("prompt"),
        since=step.created_at,
        deadline=datetime.fromisoformat(deadline) if deadline else None,
        fields=answer_fields(question.get("schema") or {}),
    )


def answer_fields(schema: dict[str, Any]) -> list[AnswerField]:
    """The form's fields, one per property of the answer's schema (a pydantic model's JSON schema)."""
    import json

    required = set(schema.get("required") or [])
    fields = []
    for name, prop in (schema.get("properties") or {}).items():
        kind = _resolve(schema, prop)
        title = str(prop.get("title") or kind.get("title") or name)
        answer = AnswerField(name, title, "json", name in required, prop.get("description"), kind=kind)
        if isinstance(kind.get("enum"), list) and all(isinstance(v, str) for v in kind["enum"]):
            answer.widget, answer.options = "select", list(kind["enum"])
        elif kind.get("type") == "string":
            answer.widget = "text"
        elif kind.get("type") in ("integer", "number"):
            answer.widget, answer.step = "number", "1" if kind["type"] == "integer" else "any"
        elif kind.get("type") == "boolean":
            answer.widget = "checkbox"
        default = prop.get("default")
        if answer.widget == "checkbox":
            answer.default = default is True
        elif default is not None:
            answer.default = default if isinstance(default, str) else json.dumps(default)
        fields.append(answer)
    return fields


def _resolve(schema: dict[str, Any], prop: dict[str, Any]) -> dict[str, Any]:
    """A property's own schema: its ``$ref`` followed (an enum's), the ``null`` of an optional dropped."""
    options = [o for o in prop.get("anyOf") or [] if o.get("type") != "null"]
    if len(options) == 1:
        prop = options[0]
    ref = prop.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return dict((schema.get("$defs") or {}).get(ref.removeprefix("#/$defs/")) or {})
    return prop


def answer_from_form(fields: list[AnswerField], form: dict[str, str]) -> dict[str, Any]:
    """The answer a form gave (fields named ``f.NAME``): a box checked or not, text as it is where the
    schema says text, else read as JSON (as ``flow respond --input`` does); a field left empty is left
    out (its default applies, or the check names it as required)."""
    from flow_engine.human_input import field_value

    answer: dict[str, Any] = {}
    for found in fields:
        text = form.get(f"f.{found.name}", "")
        if found.widget == "checkbox":
            answer[found.name] = bool(text)
        elif text != "":
            answer[found.name] = field_value(found.kind, text)
    return answer


def live_signature(run: RunRecord, steps: list[StepRecord], status: str) -> tuple[Any, ...]:
    """What changes when a run moves on: the live page re-renders when this does."""
    return (
        status,
        run.step_progress,
        run.current_step,
        run.total_tokens,
        run.error_message,
        tuple((s.id, s.status) for s in steps),
    )


# -- one step and its LLM calls -----------------------------------------------------------------
@dataclass
class Attempt:
    record: LLMRequestRecord
    status_code: int | None
    wait_ms: int | None  # time between the previous attempt's end and this one's start (the backoff)


@dataclass
class CallView:
    """One model call (``call_id``): its attempts, the prompt it sent and the answer it got."""

    call_id: uuid.UUID
    attempts: list[Attempt]
    messages: list[dict[str, Any]]
    params: dict[str, Any]
    answer_text: str | None
    answer_json: Any
    is_json: bool
    structured: bool
    verdict: str | None  # for structured output: accepted / rejected by validation

    @property
    def last(self) -> LLMRequestRecord:
        return self.attempts[-1].record


def _status_code(record: LLMRequestRecord) -> int | None:
    text = record.error_message or ""
    if text.startswith("HTTP ") and text[5:8].isdigit():
        return int(text[5:8])
    return 200 if record.status == "completed" else None


def _answer_text(response: dict[str, Any] | None) -> str | None:
    if not response:
        return None
    choices = response.get("choices") or []
    if choices and isinstance(choices[0], dict):
        message = choices[0].get("message") or {}
        content = message.get("content")
        if content is None and message.get("tool_calls"):
            return fmt.pretty(message["tool_calls"])
        return content if isinstance(content, str) else None
    return None


def group_calls(requests: list[LLMRequestRecord], step: StepRecord | None) -> list[CallView]:
    by_call: dict[uuid.UUID, list[LLMRequestRecord]] = {}
    for request in requests:
        by_call.setdefault(request.call_id, []).append(request)
    structured = step is not None and step.step_type == "structured_llm"
    calls: list[CallView] = []
    ordered = sorted(by_call.values(), key=lambda rs: min(r.created_at for r in rs))
    for index, records in enumerate(ordered):
        records.sort(key=lambda r: (r.attempt, r.created_at))
        attempts = []
        previous_end: datetime | None = None
        for record in records:
            wait = None
            if previous_end is not None:
                wait = max(0, int((record.created_at - previous_end).total_seconds() * 1000))
            attempts.append(Attempt(record, _status_code(record), wait))
            previous_end = record.created_at + timedelta(milliseconds=record.latency_ms or 0)
        last = records[-1]
        text = _answer_text(last.response)
        is_json, document = fmt.parse_json(text)
        verdict = None
        if structured and last.status == "completed":
            if index < len(ordered) - 1:
                verdict = "rejected by validation: asked again with the errors (see the next call's prompt)"
            elif step is not None and step.status == RunStatus.COMPLETED.value:
                verdict = "valid: accepted as the step's Outputs"
            elif step is not None and step.status == RunStatus.FAILED.value:
                verdict = "rejected by validation: " + fmt.first_line(step.error_message, 300)
        calls.append(
            CallView(
                call_id=last.call_id,
                attempts=attempts,
                messages=fmt.without_secrets(last.request_messages or []),
                params=fmt.without_secrets(last.request_params or {}),
                answer_text=text,
                answer_json=document,
                is_json=is_json,
                structured=structured,
                verdict=verdict,
            )
        )
    return calls


def find_step(store: RunStore, run: RunRecord, step_id: str) -> StepRecord:
    for step in store.list_steps(run.id):
        if str(step.id) == step_id or step.step_key == step_id:
            return step
    raise NotFoundError(f"run {run.id} has no step {step_id}")
