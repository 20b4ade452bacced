"""Scripted model answers: a test queues the exact replies its steps get and reads the prompts they sent.

The answers come from an in-process litellm custom provider, ``scripted``, registered with the engine
through the ordinary ``register_model_providers`` hook, so a scripted run goes through the same code as
a real one: litellm, retries, ``llm_requests`` rows, structured-output validation and re-asks. While a
:class:`ScriptedModel` is installed its ``wrap_llm_call`` hook routes every model name to it
(``openai/gpt-4o`` becomes ``scripted/openai/gpt-4o``), so steps whose class pins a real model are
answered too and nothing can reach a provider by accident.

An answer is looked up by the name of the step making the request (``respond(step, ...)``), else taken
from the shared queue (``queue(...)``), in order. No answer left is a :class:`ScriptedAnswerMissing`
naming the step and the start of its prompt: a test should never pass on a reply it did not choose.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from ..context import current_step
from ..engine import get_engine
from ..errors import UsageError
from ..hookspecs import hookimpl
from ..llm.hook import LLMCallInfo, Send, call_plugins, join_scoped_plugins
from ..plugin_types import ModelProviderInfo

PROVIDER = "scripted"
# what litellm adds to a custom provider's optional_params that the test did not ask for
_NOT_ASKED = {"max_retries", "num_retries", "timeout", "drop_params"}


class ScriptedAnswerMissing(UsageError):
    """A step asked the scripted model for an answer and none was queued for it."""


def _flatten(content: Any) -> str:
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content or "")


@dataclass
class ScriptedRequest:
    """One request a step sent to the scripted model, and what it was answered."""

    step: str | None  # the step making it; None for a call outside any step
    model: str  # the model the step asked for, before routing (``openai/gpt-4o-mini``, ``default``)
    kind: str  # completion | image_generation
    messages: list[dict[str, Any]]
    params: dict[str, Any] = field(default_factory=dict)  # temperature, response_format, size...
    answer: str | None = None  # the reply text (images: a description); None when it failed
    error: str | None = None

    @property
    def prompt(self) -> str:
        """Every message's text, joined by blank lines: what ``contains=`` searches."""
        return "\n\n".join(_flatten(m.get("content")) for m in self.messages)

    @property
    def user_prompt(self) -> str:
        """The text of the last user message (the rendered prompt template, usually)."""
        users = [m for m in self.messages if m.get("role") == "user"]
        return _flatten(users[-1].get("content")) if users else ""

    @property
    def system_prompt(self) -> str | None:
        systems = [m for m in self.messages if m.get("role") == "system"]
        return _flatten(systems[0].get("content")) if systems else None

    @property
    def schema(self) -> dict[str, Any] | None:
        """The JSON schema a structured step asked for natively (``response_format``), if any."""
        fmt = self.params.get("response_format")
        if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
            return (fmt.get("json_schema") or {}).get("schema")
        return None

    def excerpt(self, length: int = 70) -> str:
        flat = " ".join(self.user_prompt.split()) or " ".join(self.prompt.split())
        return flat if len(flat) <= length else flat[: length - 1] + "…"


Answer = Any  # str | BaseModel | dict | list | bytes | BaseException | Callable[[ScriptedRequest], Answer]


def answer_text(answer: Any) -> str:
    """What a queued answer becomes as the model's reply: text as is, objects as their JSON."""
    if isinstance(answer, str):
        return answer
    if isinstance(answer, BaseModel):
        return answer.model_dump_json()
    if isinstance(answer, dict | list | int | float | bool) or answer is None:
        return json.dumps(answer)
    raise UsageError(
        f"a scripted answer must be text, a pydantic object, a dict or list, bytes (an image), an "
        f"exception or a callable; got {type(answer).__name__}"
    )


class ScriptedModel:
    """Queued answers for the ``scripted`` provider, and every request it received (``.requests``)."""

    def __init__(self) -> None:
        self.requests: list[ScriptedRequest] = []
        self._by_step: dict[str, deque[Answer]] = {}
        self._shared: deque[Answer] = deque()
        self._lock = threading.Lock()
        self._answered = 0
        self._info = self.provider_info()  # one per script, so litellm keeps one handler for it

    # -- scripting --------------------------------------------------------------------------------
    def respond(self, step: str, *answers: Answer) -> ScriptedModel:
        """Queue ``answers`` for the step named ``step`` (its ``step_name``), used in order.

        An answer is text, a pydantic object or dict/list (sent as its JSON: what a structured step
        parses), bytes (an image, for image steps), an exception (raised, to test failure handling),
        or a callable taking the :class:`ScriptedRequest` and returning one of those.
        """
        if not answers:
            raise UsageError(f"scripted.respond({step!r}) needs at least one answer")
        with self._lock:
            self._by_step.setdefault(step, deque()).extend(answers)
        return self

    def queue(self, *answers: Answer) -> ScriptedModel:
        """Queue ``answers`` for whichever steps ask next, in order (after their own ``respond`` ones)."""
        with self._lock:
            self._shared.extend(answers)
        return self

    def pending(self) -> dict[str, int]:
        """Answers not used yet, per step name (``"*"`` for the shared queue)."""
        with self._lock:
            left = {step: len(q) for step, q in self._by_step.items() if q}
            if self._shared:
                left["*"] = len(self._shared)
            return left

    def assert_all_used(self) -> None:
        """Fail when queued answers were never asked for (a step the test expected did not run)."""
        __tracebackhide__ = True  # a failure points at the test's line, not at this helper
        left = self.pending()
        if left:
            listed = ", ".join(f"{'shared queue' if k == '*' else repr(k)}: {n}" for k, n in left.items())
            raise AssertionError(f"scripted answers never used — {listed}")

    # -- inspecting -------------------------------------------------------------------------------
    def requests_for(self, step: str) -> list[ScriptedRequest]:
        return [r for r in list(self.requests) if r.step == step]

    def prompts_for(self, step: str) -> list[str]:
        """The full prompt text (all messages) of every request the step sent, in order."""
        return [r.prompt for r in self.requests_for(step)]

    def expect(
        self,
        step: str,
        *,
        contains: str | list[str] | None = None,
        matches: str | None = None,
        count: int | None = None,
    ) -> list[ScriptedRequest]:
        """Assert that ``step`` sent a request whose prompt ``contains`` every given text and/or
        ``matches`` the regular expression, and, with ``count``, exactly that many requests.

        Returns the matching requests; raises ``AssertionError`` showing the prompts actually sent.
        """
        __tracebackhide__ = True  # a failure points at the test's line, not at this helper
        sent = self.requests_for(step)
        wanted = [contains] if isinstance(contains, str) else list(contains or [])
        pattern = re.compile(matches, re.S) if matches else None
        what = ", ".join([f"contains={c!r}" for c in wanted] + ([f"matches={matches!r}"] if matches else []))
        call = f"scripted.expect({step!r}{', ' + what if what else ''}{f', count={count}' if count else ''})"
        if count is not None and len(sent) != count:
            raise AssertionError(
                f"{call}: step {step!r} sent {len(sent)} request(s), not {count}\n{self._summary(step)}"
            )
        if not sent:
            raise AssertionError(f"{call}: step {step!r} sent no request\n{self._summary(step)}")
        found = [
            r
            for r in sent
            if all(c in r.prompt for c in wanted) and (pattern is None or pattern.search(r.prompt))
        ]
        if not found:
            raise AssertionError(f"{call}: no prompt of step {step!r} matches\n{self._summary(step)}")
        return found

    def _summary(self, step: str) -> str:
        sent = self.requests_for(step)
        if not sent:
            others = Counter(r.step or "(no step)" for r in self.requests)
            listed = ", ".join(f"{name} ({n})" for name, n in others.items()) or "none"
            return f"steps that sent requests: {listed}"
        lines = [f"prompts step {step!r} sent:"]
        for i, request in enumerate(sent, 1):
            lines.append(f"  [{i}]")
            for message in request.messages:
                text = _flatten(message.get("content"))
                shown = text if len(text) <= 600 else text[:600] + "…"
                lines.append(f"    {message.get('role')}: " + shown.replace("\n", "\n      "))
        return "\n".join(lines)

    # -- answering (called by the provider) -------------------------------------------------------
    def _next_answer(self, request: ScriptedRequest) -> Answer:
        with self._lock:
            own = self._by_step.get(request.step or "")
            if own:
                return own.popleft()
            if self._shared:
                return self._shared.popleft()
            answered, left = self._answered, {k: len(q) for k, q in self._by_step.items() if q}
        where = f"step {request.step!r}" if request.step else "a call outside any step"
        hint = f"scripted.respond({request.step!r}, ...)" if request.step else "scripted.queue(...)"
        used = f"; {answered} answer(s) were used before" if answered else ""
        others = f"; answers still queued for other steps: {left}" if left else ""
        raise ScriptedAnswerMissing(
            f"no scripted answer for {where} (model {request.model!r}, prompt {request.excerpt()!r}); "
            f"queue one with {hint} or scripted.queue(...){used}{others}"
        )

    def answer(self, request: ScriptedRequest) -> Any:
        """The reply to ``request`` (text, or bytes for an image); records it in ``.requests``."""
        self.requests.append(request)
        try:
            reply = self._next_answer(request)
            if callable(reply) and not isinstance(reply, type | BaseModel):
                reply = reply(request)
            if isinstance(reply, BaseException):
                raise reply
            if request.kind == "image_generation":
                if not isinstance(reply, bytes):
                    raise UsageError(
                        f"step {request.step!r} generates images: script it with image bytes, "
                        f"not {type(reply).__name__}"
                    )
                request.answer = f"<image, {len(reply)} bytes>"
                return reply
            request.answer = answer_text(reply)
        except BaseException as exc:
            request.error = f"{type(exc).__name__}: {exc}"
            raise
        with self._lock:
            self._answered += 1
        return request.answer

    # -- installing -------------------------------------------------------------------------------
    def route(self, model: str) -> str:
        """Every model to this provider: ``openai/gpt-4o`` -> ``scripted/openai/gpt-4o``."""
        if model == PROVIDER or model.startswith(f"{PROVIDER}/"):
            return model
        return f"{PROVIDER}/{model}"

    def provider_info(self) -> ModelProviderInfo:
        return ModelProviderInfo(
            PROVIDER,
            lambda: _make_handler(self),
            "scripted answers queued by a test (flow_engine.testing)",
            supports_response_schema=True,
            free=True,
        )

    @hookimpl
    def register_model_providers(self, register: Callable[[ModelProviderInfo], None]) -> None:
        register(self._info)

    @hookimpl(wrapper=True)
    def wrap_llm_call(self, call: LLMCallInfo) -> Generator[None, Send, Send]:
        call.model = self.route(call.model)
        return (yield)

    @contextmanager
    def installed(self) -> Iterator[ScriptedModel]:
        """Answer every LLM call made inside the block (any engine, any model) from this script."""
        with call_plugins(self):
            join_scoped_plugins(get_engine())
            yield self


class RouteToOffline:
    """A ``wrap_llm_call`` plugin: every model the offline provider does not serve itself, and no other
    in-process provider does, goes to it (``openai/gpt-4o`` -> ``offline/openai/gpt-4o``)."""

    @hookimpl(wrapper=True)
    def wrap_llm_call(self, call: LLMCallInfo) -> Generator[None, Send, Send]:
        if call.model.split("/", 1)[0] not in get_engine().plugins.model_providers():
            call.model = f"offline/{call.model}"
        return (yield)


def _usage(prompt: str, answer: str) -> dict[str, int]:
    prompt_tokens, completion_tokens = max(1, len(prompt) // 4), max(1, len(answer) // 4)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _asked(optional_params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in (optional_params or {}).items() if k not in _NOT_ASKED}


def _make_handler(script: ScriptedModel) -> Any:
    """The litellm ``CustomLLM`` answering from ``script`` (built when litellm is imported)."""
    import base64

    import litellm
    from litellm import CustomLLM
    from litellm.types.utils import ImageObject

    def step_name() -> str | None:
        scope = current_step.get()
        return scope.step_name if scope else None

    class ScriptedLLM(CustomLLM):  # type: ignore[misc]
        def _respond(
            self, model: str, messages: list[dict[str, Any]], optional_params: dict[str, Any]
        ) -> Any:
            request = ScriptedRequest(
                step_name(), model, "completion", list(messages), _asked(optional_params)
            )
            text = script.answer(request)
            return litellm.ModelResponse(
                model=f"{PROVIDER}/{model}",
                choices=[
                    {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
                ],
                usage=_usage(request.prompt, text),
            )

        def completion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
            return self._respond(model, messages, kwargs.get("optional_params") or {})

        async def acompletion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
            return self._respond(model, messages, kwargs.get("optional_params") or {})

        def _image(self, model: str, prompt: str, optional_params: dict[str, Any]) -> Any:
            messages = [{"role": "user", "content": prompt}]
            request = ScriptedRequest(
                step_name(), model, "image_generation", messages, _asked(optional_params)
            )
            data = script.answer(request)
            image = ImageObject(b64_json=base64.b64encode(data).decode(), revised_prompt=prompt)
            return litellm.ImageResponse(created=int(time.time()), data=[image])

        def image_generation(self, model: str, prompt: str, *args: Any, **kwargs: Any) -> Any:
            return self._image(model, prompt, kwargs.get("optional_params") or {})

        async def aimage_generation(self, model: str, prompt: str, *args: Any, **kwargs: Any) -> Any:
            return self._image(model, prompt, kwargs.get("optional_params") or {})

    return ScriptedLLM()
