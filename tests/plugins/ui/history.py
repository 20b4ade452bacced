"""A small run history written straight through the store contract, for the viewer's tests.

Every case the pages must show is here: a completed run whose structured step was re-asked once and
whose first call was rate-limited (429, then a retry), a failed run whose prompt and answer carry
HTML, a run with an unpriced model, a running run whose heartbeat stopped (shown crashed), a live
running run, a parent with nested child runs, a budget and a worker id.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from flow_engine.plugin import LLMRequestRecord, RunRecord, RunStore, StepRecord
from flow_engine.storage import utcnow

USER_A = uuid.UUID("aaaaaaaa-0000-4000-8000-000000000001")
USER_B = uuid.UUID("bbbbbbbb-0000-4000-8000-000000000002")
DAY = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
XSS_PROMPT = "Summarise <script>window.__xss = 1</script> please"
XSS_ANSWER = '<img src=x onerror="window.__xss = 2">'
SECRET = "sk-live-secret-98765"


@dataclass
class History:
    ids: dict[str, uuid.UUID] = field(default_factory=dict)
    steps: dict[str, uuid.UUID] = field(default_factory=dict)
    calls: dict[str, uuid.UUID] = field(default_factory=dict)


def _run(name: str, flow: str, status: str, created: datetime, **fields: object) -> RunRecord:
    fields.setdefault("started_at", created)
    fields.setdefault("last_heartbeat", created + timedelta(seconds=3))
    if status in ("completed", "failed", "cancelled"):
        fields.setdefault("completed_at", created + timedelta(seconds=3))
        fields.setdefault("execution_time_ms", 3000)
    return RunRecord(flow_name=flow, status=status, created_at=created, **fields)  # type: ignore[arg-type]


def _step(
    run: RunRecord, order: int, key: str, kind: str, status: str, start_ms: int, ms: int, **fields: object
) -> StepRecord:
    created = (run.started_at or run.created_at) + timedelta(milliseconds=start_ms)
    return StepRecord(
        flow_run_id=run.id,
        step_name=key.split("#")[0],
        step_key=key,
        step_type=kind,
        step_order=order,
        status=status,
        created_at=created,
        completed_at=created + timedelta(milliseconds=ms) if status != "running" else None,
        execution_time_ms=ms if status != "running" else None,
        **fields,  # type: ignore[arg-type]
    )


def _answer(content: str, prompt: int = 20, completion: int = 10) -> dict[str, object]:
    return {
        "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


async def _write(store: RunStore, h: History) -> None:
    # 1. completed, structured step re-asked once; its first call was rate-limited then retried
    done = _run(
        "done",
        "summarize_flow",
        "completed",
        DAY,
        user_id=USER_A,
        total_tokens=150,
        total_cost=0.0123,
        step_progress=2,
        total_steps=2,
        progress_percentage=100.0,
        inputs={"article": "Cats are great."},
        outputs={"title": "Cats"},
        flow_metadata={"flow_ref": "x:Y", "run_options": {"max_cost": 0.5, "model": "openai/gpt-4o-mini"}},
        claimed_by="worker-7@build-host",
    )
    await store.create_run(done)
    extract = _step(
        done,
        1,
        "extract",
        "unstructured_llm",
        "completed",
        0,
        800,
        tokens_used=50,
        cost_estimate=0.0023,
        inputs={"text": "Cats are great."},
        outputs={"output_content": "Cats."},
        step_metadata={"model": "openai/gpt-4o-mini", "llm_calls": 1, "unpriced_calls": 0},
    )
    summarize = _step(
        done,
        2,
        "summarize",
        "structured_llm",
        "completed",
        900,
        2000,
        tokens_used=100,
        cost_estimate=0.01,
        inputs={"content": "Cats."},
        outputs={"output_content": {"title": "Cats", "points": ["great"]}},
        step_metadata={"model": "openai/gpt-4o-mini", "llm_calls": 2, "unpriced_calls": 0},
    )
    for step in (extract, summarize):
        await store.start_step(step, {})
    first_call, second_call = uuid.uuid4(), uuid.uuid4()
    t0 = summarize.created_at
    base = {
        "flow_run_id": done.id,
        "step_run_id": summarize.id,
        "model": "openai/gpt-4o-mini",
        "provider": "openai",
    }
    params = {
        "temperature": 0.2,
        "response_format": {"type": "json_schema", "json_schema": {"name": "Outputs"}},
    }
    await store.record_llm_request(
        LLMRequestRecord(
            **base,
            call_id=first_call,
            attempt=1,
            status="failed",
            latency_ms=120,
            created_at=t0,
            error_message="HTTP 429 RateLimitError: slow down",
            request_messages=[{"role": "user", "content": "Summarise: Cats."}],
            request_params=params,
        )
    )
    await store.record_llm_request(
        LLMRequestRecord(
            **base,
            call_id=first_call,
            attempt=2,
            status="completed",
            latency_ms=300,
            created_at=t0 + timedelta(milliseconds=120 + 450),
            cost=0.004,
            prompt_tokens=30,
            completion_tokens=10,
            total_tokens=40,
            request_messages=[{"role": "user", "content": "Summarise: Cats."}],
            request_params=params,
            response=_answer('{"title": "Cats"}'),
        )
    )
    await store.record_llm_request(
        LLMRequestRecord(
            **base,
            call_id=second_call,
            attempt=1,
            status="completed",
            latency_ms=400,
            created_at=t0 + timedelta(milliseconds=1200),
            cost=0.006,
            prompt_tokens=40,
            completion_tokens=20,
            total_tokens=60,
            request_params=params,
            request_messages=[
                {"role": "user", "content": "Summarise: Cats."},
                {"role": "user", "content": "points: Field required. Answer again."},
            ],
            response=_answer('{"title": "Cats", "points": ["great"]}'),
        )
    )
    h.ids["done"], h.steps["extract"], h.steps["summarize"] = done.id, extract.id, summarize.id
    h.calls["first"], h.calls["second"] = first_call, second_call

    # 2. failed; HTML in the prompt and the answer; a secret that must never be shown
    failed = _run(
        "failed",
        "summarize_flow",
        "failed",
        DAY + timedelta(days=1),
        user_id=USER_B,
        total_tokens=30,
        total_cost=0.001,
        step_progress=1,
        total_steps=2,
        inputs={"article": XSS_PROMPT},
        error_message="StepFailed: write: the model refused",
    )
    await store.create_run(failed)
    ok = _step(
        failed,
        1,
        "extract",
        "unstructured_llm",
        "completed",
        0,
        500,
        tokens_used=30,
        cost_estimate=0.001,
        step_metadata={"model": "openai/gpt-4o-mini", "llm_calls": 1},
    )
    bad = _step(
        failed,
        2,
        "write",
        "unstructured_llm",
        "failed",
        600,
        1500,
        tokens_used=0,
        cost_estimate=0.0,
        error_message="LLMError: the model refused\nsecond line",
        step_metadata={"model": "openai/gpt-4o-mini"},
    )
    await store.start_step(ok, {})
    await store.start_step(bad, {})
    await store.record_llm_request(
        LLMRequestRecord(
            flow_run_id=failed.id,
            step_run_id=ok.id,
            model="openai/gpt-4o-mini",
            status="completed",
            latency_ms=90,
            created_at=ok.created_at,
            cost=0.001,
            prompt_tokens=20,
            completion_tokens=10,
            total_tokens=30,
            request_messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": XSS_PROMPT},
            ],
            request_params={
                "temperature": 0,
                "api_key": SECRET,
                "extra_headers": {"Authorization": f"Bearer {SECRET}"},
            },
            response=_answer(XSS_ANSWER),
        )
    )
    h.ids["failed"], h.steps["write"], h.steps["failed_extract"] = failed.id, bad.id, ok.id

    # 3. an unpriced model: cost unknown, never $0
    unpriced = _run(
        "unpriced",
        "other_flow",
        "completed",
        DAY + timedelta(days=2),
        total_tokens=70,
        total_cost=0.0,
        unpriced_calls=1,
    )
    await store.create_run(unpriced)
    await store.start_step(
        _step(
            unpriced,
            1,
            "ask",
            "unstructured_llm",
            "completed",
            0,
            100,
            tokens_used=70,
            cost_estimate=None,
            step_metadata={"model": "ollama/llama3", "unpriced_calls": 1},
        ),
        {},
    )
    h.ids["unpriced"] = unpriced.id

    # 4. says running, heartbeat an hour old: shown crashed. 5. running with a fresh heartbeat.
    now = utcnow()
    stale = _run(
        "stale",
        "other_flow",
        "running",
        now - timedelta(hours=2),
        last_heartbeat=now - timedelta(hours=1),
        step_progress=1,
    )
    await store.create_run(stale)
    h.ids["stale"] = stale.id
    live = _run(
        "live", "other_flow", "running", now - timedelta(minutes=1), last_heartbeat=now + timedelta(hours=1)
    )
    await store.create_run(live)
    h.ids["live"] = live.id

    # 6. a parent with a child, which has a child of its own
    parent = _run("parent", "parent_flow", "completed", DAY + timedelta(days=3), total_tokens=5)
    await store.create_run(parent)
    child = _run(
        "child",
        "child_flow",
        "completed",
        DAY + timedelta(days=3, seconds=1),
        parent_run_id=parent.id,
        run_key="child_flow#1",
    )
    await store.create_run(child)
    grandchild = _run(
        "grandchild",
        "leaf_flow",
        "failed",
        DAY + timedelta(days=3, seconds=2),
        parent_run_id=child.id,
        error_message="leaf broke",
    )
    await store.create_run(grandchild)
    h.ids["parent"], h.ids["child"], h.ids["grandchild"] = parent.id, child.id, grandchild.id

    # 7. seven runs of one flow, for pagination
    for n in range(7):
        run = _run(f"many{n}", "many_flow", "completed", DAY - timedelta(days=10, minutes=n))
        await store.create_run(run)
        h.ids[f"many{n}"] = run.id


def write_history(store: RunStore) -> History:
    history = History()
    asyncio.run(_write(store, history))
    return history
