"""Flows the end-to-end tests run as ``flow run tests/e2e/durable_flows.py:Class`` in a real process.

Every LLM step has its own prompt (tagged ``[R1 rivers]``, ``[S2 the Danube]``...), and later prompts
contain earlier answers: a step replayed on resume with a wrong stored output would change the prompts
after it, and so the outputs. The fake server answers unstructured prompts by echoing them and structured
ones with the JSON registered for their tag (``STRUCTURED_ANSWERS``): the same prompt, the same answer.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel

from flow_engine import BaseFlow, BaseStep, StructuredStep, UnstructuredStep


class Ask(UnstructuredStep):
    step_name = "ask"

    class Inputs(BaseModel):
        prompt: str


class Outline(StructuredStep):
    step_name = "outline"

    class Inputs(BaseModel):
        prompt: str

    class Outputs(BaseModel):
        title: str
        points: list[str]


class Verdict(StructuredStep):
    step_name = "verdict"

    class Inputs(BaseModel):
        prompt: str

    class Outputs(BaseModel):
        score: int
        summary: str


# tag in the prompt -> the JSON the fake server answers (see tests/e2e/conftest.py)
STRUCTURED_ANSWERS: dict[str, dict[str, Any]] = {
    "[R2 rivers]": {"title": "Rivers of Europe", "points": ["the Danube", "the Rhine"]},
    "[S2 the Danube]": {"title": "Danube facts", "points": ["2850 km long", "ten countries"]},
    "[R4 rivers]": {"score": 8, "summary": "a fair survey"},
    "[R2 lakes]": {"title": "Great lakes", "points": ["Lake Baikal", "Lake Geneva"]},
    "[S2 Lake Baikal]": {"title": "Baikal facts", "points": ["1642 m deep", "in Siberia"]},
    "[R4 lakes]": {"score": 6, "summary": "too short"},
}


class Section(BaseFlow):
    """The child flow: three LLM steps about one topic."""

    flow_name = "e2e_section"

    class Inputs(BaseModel):
        topic: str

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        topic = inputs["topic"]
        draft = await Ask().execute({"prompt": f"[S1 {topic}] Draft a paragraph about {topic}."})
        facts = await Outline().execute({"prompt": f"[S2 {topic}] List facts about {topic}."})
        assert isinstance(facts.output_content, Outline.Outputs)  # also when replayed
        fact = facts.output_content.points[0]
        polished = await Ask().execute(
            {"prompt": f"[S3 {topic}] Polish, adding {fact}: {draft.output_content}"}
        )
        return {"text": polished.output_content, "facts": facts.output_content.points}


class Research(BaseFlow):
    """Five LLM steps (unstructured and structured) with a child flow of three in the middle."""

    flow_name = "e2e_research"

    class Inputs(BaseModel):
        subject: str = "rivers"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        subject = inputs["subject"]
        intro = await Ask().execute({"prompt": f"[R1 {subject}] Introduce {subject} in one line."})
        outline = await Outline().execute({"prompt": f"[R2 {subject}] Outline an article on {subject}."})
        assert isinstance(outline.output_content, Outline.Outputs)  # also when replayed
        title = outline.output_content.title
        angle = await Ask().execute(
            {"prompt": f"[R3 {subject}] Pick an angle for '{title}' after: {intro.output_content}"}
        )
        section = await Section().execute({"topic": outline.output_content.points[0]})
        verdict = await Verdict().execute({"prompt": f"[R4 {subject}] Judge this section: {section['text']}"})
        score = verdict.output_content.score
        summary = await Ask().execute(
            {"prompt": f"[R5 {subject}] Summarise, scored {score}: {angle.output_content}"}
        )
        return {
            "intro": intro.output_content,
            "title": outline.output_content.title,
            "section": section,
            "verdict": verdict.output_content.model_dump(),
            "summary": summary.output_content,
        }


class Pause(BaseStep):
    """A plain step that takes a while (no LLM): for cancelling a run from another process."""

    step_name = "pause"

    class Inputs(BaseModel):
        n: int
        seconds: float = 0.4

    async def run(self, inputs: Inputs) -> int:
        await asyncio.sleep(inputs.seconds)
        return inputs.n


class Patient(BaseFlow):
    """Eight slow plain steps, the middle ones in a child flow."""

    flow_name = "e2e_patient"

    class Inputs(BaseModel):
        seconds: float = 0.4

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        done = [
            (await Pause().execute({"n": n, "seconds": inputs["seconds"]})).output_content for n in range(3)
        ]
        done += (await PatientChild().execute({"seconds": inputs["seconds"]}))["done"]
        for n in range(6, 8):
            done.append((await Pause().execute({"n": n, "seconds": inputs["seconds"]})).output_content)
        return {"done": done}


class PatientChild(BaseFlow):
    flow_name = "e2e_patient_child"

    class Inputs(BaseModel):
        seconds: float = 0.4

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return {
            "done": [
                (await Pause().execute({"n": n, "seconds": inputs["seconds"]})).output_content
                for n in (3, 4, 5)
            ]
        }


class Spender(BaseFlow):
    """Three LLM steps, for budgets: the fake server answers each ``[B...]`` prompt with known usage."""

    flow_name = "e2e_spender"

    class Inputs(BaseModel):
        tag: str = "spend"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        answers = [
            (await Ask().execute({"prompt": f"[B{n} {inputs['tag']}] Say something costly."})).output_content
            for n in (1, 2, 3)
        ]
        return {"answers": answers}
