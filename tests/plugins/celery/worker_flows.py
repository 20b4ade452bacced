"""Flows the Celery tests submit and ``flow worker`` subprocesses run (importable as
``tests.plugins.celery.worker_flows`` on both sides: the workers get the repository on PYTHONPATH).

Every LLM call goes to the fake OpenAI-compatible server, whose default reply is
``fake answer to: <prompt>``; each prompt names its run's topic and the question's number, so the
requests the server counts can be told apart per run and per step.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from flow_engine import BaseFlow, UnstructuredStep


class Ask(UnstructuredStep):
    step_name = "ask"

    class Inputs(BaseModel):
        prompt: str


def prompt_of(topic: str, number: int) -> str:
    return f"question {number} about {topic}"


def answer_of(topic: str, number: int) -> str:
    return f"fake answer to: {prompt_of(topic, number)}"


class Questions(BaseFlow):
    """Asks ``count`` questions about ``topic``, one LLM step each, and returns the answers."""

    flow_name = "celery_questions"

    class Inputs(BaseModel):
        topic: str
        count: int = Field(default=3, ge=1)

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        answers = []
        for number in range(1, inputs["count"] + 1):
            result = await Ask().execute({"prompt": prompt_of(inputs["topic"], number)})
            answers.append(result.output_content)
        return {"topic": inputs["topic"], "answers": answers}


class Approval(BaseModel):
    approved: bool


class Reviewed(BaseFlow):
    """One question, then a wait for a person's approval, then a second question."""

    flow_name = "celery_reviewed"

    class Inputs(BaseModel):
        topic: str

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        first = await Ask().execute({"prompt": prompt_of(inputs["topic"], 1)})
        answer = await self.wait_for_input("approve", Approval, prompt="Go on?")
        second = await Ask().execute({"prompt": prompt_of(inputs["topic"], 2)})
        return {"approved": answer.approved, "answers": [first.output_content, second.output_content]}
