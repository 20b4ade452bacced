"""The ``wrap_llm_call`` hook: what a plugin sees of each model call, and how the hook is called.

Every attempt of every LLM call goes through the hook (``calls.py``). The hook's result is a ``Send``:
an ``async`` function of no arguments returning litellm's response. The engine's own implementation
(the innermost) calls litellm; a plugin's wrapper (``@hookimpl(wrapper=True)``) receives the inner
``Send`` from ``yield`` and returns its own, which may await the inner one and look at the response
(record a cassette, trace, count) or answer without it (replay, a test's script). Before ``yield`` a
wrapper may change ``call.model`` (route every call to another provider).

Plugins registered on the engine take part. :func:`call_plugins` adds plugins for a block of code
instead, whatever engine that block configures (test fixtures, ``cassette()``): they are registered on
each engine a call of the block meets and unregistered when the block ends. While registered they
answer only the calls made inside their block (its context): a task running beside the block on the
same engine, started outside it, is not replayed, scripted or routed by them; nor is a call made after
the block ended by a task the block started (it kept the block's context, not the block).
"""

from __future__ import annotations

import contextvars
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..hookspecs import hookimpl

if TYPE_CHECKING:  # pragma: no cover
    from ..engine import Engine

Send = Callable[[], Awaitable[Any]]


@dataclass
class LLMCallInfo:
    """One attempt of one model call, as the ``wrap_llm_call`` hook sees it."""

    kind: str  # "completion" | "image_generation"
    model: str  # litellm's model string; a wrapper may change it before it yields
    messages: list[dict[str, Any]] | None  # the chat messages (completion); None for an image
    prompt: str | None  # the image prompt (image_generation); None for a completion
    params: dict[str, Any]  # every other litellm argument the caller gave (temperature, response_format...)
    attempt: int  # 1 for the first attempt; retries of transient failures count up
    call_id: uuid.UUID  # the same for every attempt of the call
    step: str | None = None  # the step making the call (its step_name); None outside any step
    run_id: uuid.UUID | None = None
    step_id: uuid.UUID | None = None
    api_base: str | None = None
    # set by a wrapper that answered from a recording instead of the model: the attempt's row then
    # costs nothing and says where its answer came from
    replayed_from: str | None = None
    # the rate-limit rule (FLOW_ENGINE_RATE_LIMITS) this attempt is waiting for right now, if any, and
    # how long it waited for it in all (seconds); the progress display says so
    queued_for: str | None = None
    queue_seconds: float = 0.0

    @property
    def request(self) -> dict[str, Any]:
        """The request as the caller gave it: messages (or prompt) and params."""
        if self.kind == "completion":
            return {"messages": self.messages, **self.params}
        return {"prompt": self.prompt, **self.params}


class _Block:
    """One ``call_plugins`` block; ``ended`` once it has (its context may live on in tasks it started)."""

    __slots__ = ("ended",)

    def __init__(self) -> None:
        self.ended = False


# the plugins of the blocks the current code runs in, each with its block
_scoped: contextvars.ContextVar[tuple[tuple[Any, _Block], ...]] = contextvars.ContextVar(
    "call_plugins", default=()
)
_registered: list[tuple[Engine, str]] = []


@contextmanager
def call_plugins(*plugins: Any) -> Iterator[None]:
    """Plugins taking part in every LLM call made inside the block, on whatever engine it uses."""
    block = _Block()
    token = _scoped.set((*_scoped.get(), *((plugin, block) for plugin in plugins)))
    try:
        yield
    finally:
        block.ended = True
        _scoped.reset(token)
        for engine, name in [r for r in _registered if r[1] in {_name(p) for p in plugins}]:
            try:
                engine.plugins.unregister(name)
            except Exception:  # the engine may be closed or replaced already
                pass
            _registered.remove((engine, name))


def _name(plugin: Any) -> str:
    return f"flow-engine-call-plugin-{id(plugin):x}"


def join_scoped_plugins(engine: Engine) -> None:
    """Register this block's :func:`call_plugins` on ``engine`` (once), unless the block has ended."""
    for plugin, block in _scoped.get():
        if block.ended:
            continue
        name = _name(plugin)
        if not engine.plugins.pm.has_plugin(name):
            engine.plugins.register(plugin, name=name)
            _registered.append((engine, name))


class _Innermost:
    """The engine's own ``wrap_llm_call`` (the litellm call), registered once per engine as the last
    implementation, inside every wrapper. (pluggy's ``call_extra`` would build a hook implementation,
    signature inspection included, on every attempt.)"""

    def __init__(self, inner: Callable[[LLMCallInfo], Send]) -> None:
        self.inner = inner

    @hookimpl(trylast=True)
    def wrap_llm_call(self, call: LLMCallInfo) -> Send:
        return self.inner(call)


_INNERMOST = "flow-engine-innermost-send"


def call_listeners(engine: Engine) -> list[str]:
    """The plugins taking part in LLM calls (``wrap_llm_call``), the engine's own innermost call aside."""
    impls = engine.plugins.pm.hook.wrap_llm_call.get_hookimpls()
    return [impl.plugin_name for impl in impls if impl.plugin_name != _INNERMOST]


def wrapped(engine: Engine, call: LLMCallInfo, inner: Callable[[LLMCallInfo], Send]) -> Send:
    """The ``Send`` of this attempt: ``inner(call)`` (the engine's litellm call) inside every plugin's
    ``wrap_llm_call`` wrapper."""
    pm = engine.plugins.pm
    hook = pm.hook.wrap_llm_call
    innermost = pm.get_plugin(_INNERMOST)
    listeners = len(hook.get_hookimpls()) - (innermost is not None)
    if not listeners:  # nobody listens: no hook machinery on the common path
        return inner(call)
    if innermost is None or innermost.inner is not inner:
        if innermost is not None:
            pm.unregister(name=_INNERMOST)
        pm.register(_Innermost(inner), name=_INNERMOST)
    if _registered:  # a block's plugins sit on the engine: they take part in that block's calls alone
        here = {_name(p) for p, block in _scoped.get() if not block.ended}
        others = [pm.get_plugin(n) for e, n in _registered if e is engine and n not in here]
        if others:
            hook = pm.subset_hook_caller("wrap_llm_call", remove_plugins=others)
    send: Send = hook(call=call)
    return send
