"""What a stored step weighs: metadata keys that repeat a column are stored once (in the column) and
come back on read, so records, ``flow show`` and resume see exactly what the step returned."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from flow_engine import BaseFlow, UnstructuredStep
from flow_engine.plugins.sql.models import flow_step_runs

REPEATED = (
    "tokens_used",
    "cost_estimate",
    "execution_time_ms",
    "step_type",
    "run_id",
    "step_key",
    "step_order",
)


class Ask(UnstructuredStep):
    step_name = "ask"


class Asking(BaseFlow):
    flow_name = "asking"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        first = await Ask().execute({"prompt": "hello"}, model="offline/default")
        second = await Ask().execute({"prompt": "again"}, model="offline/default")
        return {"metadata": [first.metadata, second.metadata]}


async def test_metadata_repeating_columns_is_stored_once_and_read_back_whole(store):
    result = await Asking().execute({})
    returned = result["metadata"] if isinstance(result, dict) else result.outputs["metadata"]
    run = store.list_runs(flow_name="asking")[0]

    steps = store.list_steps(run.id)

    assert [s.step_metadata for s in steps] == [json.loads(json.dumps(m)) for m in returned]
    assert all(s.step_metadata and s.step_metadata["llm_request_id"] == str(s.llm_request_id) for s in steps)
    with store.engine.connect() as conn:
        raw = conn.execute(
            select(flow_step_runs.c.step_metadata).order_by(flow_step_runs.c.step_order)
        ).scalars()
        stored = list(raw)
    for row in stored:
        assert row["~columns"] == "tceyrkol"
        assert not set(REPEATED) & set(row) and "llm_request_id" not in row
        assert row["model"] == "offline/default"
