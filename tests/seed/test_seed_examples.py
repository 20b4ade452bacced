"""The seed's usage examples run as written, offline, and leave the records the seed promises."""

from __future__ import annotations

from pathlib import Path

from flow_engine.plugin import RunStatus
from tests.fake_openai_server import tiny_png

from . import seed_examples as seed


async def test_example_1_article_processing_prints_title_summary_tokens(engine, capsys, scripted):
    scripted.respond("extract_content", "The article's essential content.")
    scripted.respond(
        "summarize",
        seed.SummarizeStep.Outputs(title="An article", summary="It says little.", key_points=["little"]),
    )
    await seed.process_article()
    out = capsys.readouterr().out
    assert "Title: An article\nSummary: It says little.\n" in out
    tokens = int(out.split("Total tokens: ")[1].split()[0])
    assert tokens > 0
    # each prompt template got its inputs; the second step's prompt carries the first step's answer
    scripted.expect("extract_content", contains="Long article content...")
    scripted.expect("summarize", contains=["The article's essential content.", "technical"])
    [run] = engine.store.list_runs(flow_name="article_processing")
    assert run.status == RunStatus.COMPLETED
    assert run.total_tokens == tokens
    steps = engine.store.list_steps(run.id)
    assert [(s.step_name, s.step_order, s.status) for s in steps] == [
        ("extract_content", 1, "completed"),
        ("summarize", 2, "completed"),
    ]
    assert sum(s.tokens_used for s in steps) == tokens


def _read(path: str) -> bytes:
    return Path(path).read_bytes()


async def test_example_2_master_flow_runs_child_flow_and_makes_a_thumbnail(engine, scripted):
    png = tiny_png(8, 8)
    scripted.respond("extract_content", "Rivers rise in spring.")
    scripted.respond("summarize", {"title": "Spring rivers", "summary": "They rise.", "key_points": ["rise"]})
    scripted.respond("create_thumbnail", png)
    result = await seed.MasterContentFlow().execute(
        {"article_text": "Article content...", "create_image": True}
    )
    assert set(result) == {"article", "thumbnail"}
    assert result["article"]["summary"]["title"] == "Spring rivers"
    # the thumbnail's prompt is made from the child flow's title, at the step's default size
    [thumbnail] = scripted.expect("create_thumbnail", contains="Thumbnail for: Spring rivers", count=1)
    assert thumbnail.params["size"] == "1024x1024"
    assert _read(result["thumbnail"]["images"][0]["path"]) == png
    [master] = engine.store.list_runs(flow_name="master_content")
    [child] = engine.store.list_runs(flow_name="article_processing")
    assert child.parent_run_id == master.id
    assert master.status == child.status == RunStatus.COMPLETED
    master_steps = engine.store.list_steps(master.id)
    assert [s.step_name for s in master_steps] == ["create_thumbnail"]
    assert master.total_tokens >= child.total_tokens > 0


async def test_example_2_without_image(engine):
    result = await seed.MasterContentFlow().execute(
        {"article_text": "Article content...", "create_image": False}
    )
    assert set(result) == {"article"}


async def test_example_3_individual_steps_outside_any_flow(engine):
    result = await seed.use_individual_steps()
    assert isinstance(result["content"], str) and result["content"]
    assert set(result["summary"]) == {"title", "summary", "key_points"}
    assert _read(result["image"]["path"]).startswith(b"\x89PNG")
    assert engine.store.list_runs() == []  # no flow, no run rows
    requests = engine.store.list_llm_requests()
    assert [r.kind for r in requests] == ["completion", "completion", "image_generation"]
    assert all(r.flow_run_id is None for r in requests)


async def test_the_seed_examples_run_verbatim_against_an_unpriced_model(
    fake_openai, tmp_path, capsys, monkeypatch
):
    """A local server's model has no price: the seed's ``cost_estimate + cost_estimate`` still works
    (0.0 with ``cost_known`` False, one warning per model), while every record says unknown."""
    import pytest

    from flow_engine import step_runner
    from flow_engine.engine import get_engine
    from flow_engine.step_runner import UnpricedModelWarning

    monkeypatch.setattr(step_runner, "_warned_unpriced", set())  # once per model and process
    from tests.fake_openai_server import ImageReply, Reply, use_fake_openai

    use_fake_openai(fake_openai.base_url, tmp_path, model="openai/my-local-model")
    summary = {"title": "Local", "summary": "Unpriced.", "key_points": ["free?"]}
    fake_openai.script(Reply("Essential content.", usage=(10, 5)), Reply(json=summary, usage=(12, 6)))
    with pytest.warns(UnpricedModelWarning, match="'openai/my-local-model' has no known price") as caught:
        await seed.process_article()
    assert len([w for w in caught if w.category is UnpricedModelWarning]) == 1  # once per model
    assert "Title: Local\nSummary: Unpriced.\nTotal tokens: 33\n" in capsys.readouterr().out
    store = get_engine().store
    [run] = store.list_runs(flow_name="article_processing")
    assert run.status == RunStatus.COMPLETED
    assert run.outputs["metadata"]["total_cost"] == 0.0  # what the seed's own arithmetic made
    assert run.total_cost in (None, 0.0) and run.unpriced_calls == 2  # the record: unknown
    for step in store.list_steps(run.id):
        assert step.cost_estimate is None and step.step_metadata["cost_known"] is False
    fake_openai.script(
        Reply("Rivers.", usage=(3, 3)), Reply(json=summary, usage=(3, 3)), ImageReply(),
        Reply("Rivers.", usage=(3, 3)), Reply(json=summary, usage=(3, 3)), ImageReply(),
    )  # fmt: skip
    result = await seed.MasterContentFlow().execute({"article_text": "A", "create_image": True})
    assert result["article"]["metadata"]["total_cost"] == 0.0
    individual = await seed.use_individual_steps()
    assert individual["summary"]["title"] == "Local"
