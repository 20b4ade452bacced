"""The seed's usage examples run as written, offline, and leave the records the seed promises."""

from __future__ import annotations

from pathlib import Path

from flow_engine.storage import RunStatus

from . import seed_examples as seed


async def test_example_1_article_processing_prints_title_summary_tokens(engine, capsys):
    await seed.process_article()
    out = capsys.readouterr().out
    assert "Title: " in out and "Summary: " in out
    tokens = int(out.split("Total tokens: ")[1].split()[0])
    assert tokens > 0
    [run] = engine.store.list_runs(flow_name="article_processing")
    assert run.status == RunStatus.COMPLETED
    assert run.total_tokens == tokens
    steps = engine.store.list_steps(run.id)
    assert [(s.step_name, s.step_order, s.status) for s in steps] == [
        ("extract_content", 1, "completed"),
        ("summarize", 2, "completed"),
    ]
    assert sum(s.tokens_used for s in steps) == tokens


async def test_example_2_master_flow_runs_child_flow_and_makes_a_thumbnail(engine):
    result = await seed.MasterContentFlow().execute({"article_text": "Article content...", "create_image": True})
    assert set(result) == {"article", "thumbnail"}
    assert result["article"]["summary"]["title"]
    image = result["thumbnail"]["images"][0]
    assert Path(image["path"]).read_bytes().startswith(b"\x89PNG")
    [master] = engine.store.list_runs(flow_name="master_content")
    [child] = engine.store.list_runs(flow_name="article_processing")
    assert child.parent_run_id == master.id
    assert master.status == child.status == RunStatus.COMPLETED
    master_steps = engine.store.list_steps(master.id)
    assert [s.step_name for s in master_steps] == ["create_thumbnail"]
    assert master.total_tokens >= child.total_tokens > 0


async def test_example_2_without_image(engine):
    result = await seed.MasterContentFlow().execute({"article_text": "Article content...", "create_image": False})
    assert set(result) == {"article"}


async def test_example_3_individual_steps_outside_any_flow(engine):
    result = await seed.use_individual_steps()
    assert isinstance(result["content"], str) and result["content"]
    assert set(result["summary"]) == {"title", "summary", "key_points"}
    assert Path(result["image"]["path"]).is_file()
    assert engine.store.list_runs() == []  # no flow, no run rows
    requests = engine.store.list_llm_requests()
    assert [r.kind for r in requests] == ["completion", "completion", "image_generation"]
    assert all(r.flow_run_id is None for r in requests)
