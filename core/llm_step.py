"""What every LLM step type shares: turning validated inputs into chat messages."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel

from .context import current_step
from .engine import get_engine
from .errors import UsageError
from .prompts import render_prompt
from .steps import BaseStep


def input_variables(inputs: Any) -> dict[str, Any]:
    """A step's validated inputs as template variables: a pydantic model's declared fields (not its
    extras, not its nested models turned into dicts: ``{{ author.name }}`` works), or the dict."""
    if isinstance(inputs, BaseModel):
        return {name: getattr(inputs, name) for name in type(inputs).model_fields}
    return dict(inputs or {})


class LLMStep(BaseStep):
    """Base of the LLM step types. ``prompt_file`` is rendered with the inputs; without one, the
    ``prompt`` input is the prompt. ``system_prompt`` and ``llm_params`` (temperature, max_tokens, ...)
    are optional class attributes. ``max_output_tokens`` limits the answer's length (default
    FLOW_ENGINE_MAX_OUTPUT_TOKENS; ``max_tokens`` in ``llm_params`` wins): a model writing until its
    context is full would otherwise outlast the request timeout."""

    system_prompt: ClassVar[str | None] = None
    llm_params: ClassVar[dict[str, Any]] = {}
    max_output_tokens: ClassVar[int | None] = None

    def render(self, inputs: Any) -> str:
        variables = input_variables(inputs)
        if self.prompt_file:
            return render_prompt(type(self), self.prompt_file, variables, get_engine().settings.prompts_path)
        prompt = variables.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise UsageError(
                f"step '{self.step_name}' has no prompt_file and no 'prompt' input; set one of them"
            )
        return prompt

    def build_messages(self, inputs: Any) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        if self.system_prompt:
            messages.append({"role": "system", "content": self.system_prompt})
        messages.append({"role": "user", "content": self.render(inputs)})
        return messages

    def call_params(self, model: str) -> dict[str, Any]:
        """``llm_params`` with the output limit: the step's ``max_output_tokens``, else the setting (for a
        model behind a server; an in-process model such as the offline one gets only an explicit one)."""
        params = dict(self.llm_params)
        if "max_tokens" in params or "max_completion_tokens" in params or "max_output_tokens" in params:
            return params
        limit = self.max_output_tokens
        if limit is None:
            in_process = "/" in model and model.split("/", 1)[0] in get_engine().plugins.model_providers()
            limit = None if in_process else get_engine().settings.max_output_tokens
        if limit:
            params["max_tokens"] = limit
        return params

    def call_model(self) -> str:
        scope = current_step.get()
        return normalize_model(self.resolve_model(scope.model_override if scope else None))


def normalize_model(model: str) -> str:
    """``offline`` (a plugin provider's bare name) means ``offline/default``; litellm wants the slash."""
    if "/" not in model and model in get_engine().plugins.model_providers():
        return f"{model}/default"
    return model
