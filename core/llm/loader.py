"""Importing litellm the way flow-engine needs it: once, lazily, with no network and no banners.

litellm fetches a price map from the internet at import unless told to use its bundled copy, prints
"Give Feedback" banners on errors, and takes seconds to import; so nothing imports it but this module,
and only when a model is actually called.

Its import also leaves ~400,000 objects that live as long as the process (modules, the price map),
and every full garbage collection walks them all: about 0.3 s here, during which the event loop is
frozen, and with many calls in flight a full collection happens every few hundred calls. Unless
``FLOW_ENGINE_GC_FREEZE`` is off, the loader collects once and then ``gc.freeze()``s what is alive
right after the import, so that later collections skip those objects (docs/performance.md measures
it). What is frozen is never collected by the cycle collector; reference counting still frees it.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
from typing import Any

_lock = threading.Lock()
_litellm: Any = None
# what this module put in litellm.custom_provider_map: provider name -> (its ModelProviderInfo, handler)
_registered: dict[str, tuple[Any, Any]] = {}
_ever_registered: set[str] = set()
# the providers dict last found current (its identity): checking it again on every call is not free
_checked: list[Any] = [None]


def prepare_environment() -> None:
    """What litellm reads at import: its bundled price map, no downloads, no crash on ``LITELLM_LOG=``.

    A value the user set explicitly is left alone (except an empty ``LITELLM_LOG``, which would crash).
    """
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")
    if os.environ.get("LITELLM_LOG") == "":
        del os.environ["LITELLM_LOG"]


def load_litellm() -> Any:
    """litellm, imported on first use (with :func:`prepare_environment`) and quietened."""
    global _litellm
    if _litellm is not None:
        return _litellm
    with _lock:
        if _litellm is None:
            prepare_environment()
            import litellm

            litellm.suppress_debug_info = True
            litellm.telemetry = False
            guard_litellm_logs()
            if _gc_freeze_wanted():
                gc.collect()
                gc.freeze()
            _litellm = litellm
    return _litellm


def guard_litellm_logs() -> None:
    """litellm's own debug log prints each request (a curl line with its headers): the running call's
    secrets are blanked there too, for whoever turns that log on."""
    from .redact import SecretFilter

    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, SecretFilter) for f in logger.filters):
            logger.addFilter(SecretFilter())


def _gc_freeze_wanted() -> bool:
    from ..engine import get_engine

    return bool(get_engine().settings.gc_freeze)


def ensure_providers(providers: dict[str, Any]) -> Any:
    """Import litellm and make its custom providers exactly the engine's in-process ones.

    Cheap when nothing changed. A provider registered for an earlier engine whose plugin is not loaded
    now (disabled, say) is taken out again, so its models fail instead of quietly answering. Custom
    providers registered with litellm directly by someone else are left alone.
    """
    litellm = load_litellm()
    if providers is _checked[0] or _current(providers):
        _checked[0] = providers  # the engine keeps its dict: the same object is the same providers
        return litellm
    with _lock:
        if not _current(providers):
            handlers = {}
            for name, info in providers.items():
                known = _registered.get(name)
                handlers[name] = (
                    known if known is not None and known[0] == info else (info, info.handler_factory())
                )
            _registered.clear()
            _registered.update(handlers)
            _ever_registered.update(providers)
            entries = [
                e for e in (litellm.custom_provider_map or []) if e["provider"] not in _ever_registered
            ]
            entries += [
                {"provider": name, "custom_handler": handler} for name, (_, handler) in handlers.items()
            ]
            litellm.custom_provider_map = entries
            from litellm.utils import custom_llm_setup

            custom_llm_setup()
            _checked[0] = providers
            provider_guesses.clear()
    return litellm


def _current(providers: dict[str, Any]) -> bool:
    return len(providers) == len(_registered) and all(
        name in _registered and _registered[name][0] == info for name, info in providers.items()
    )


# (model, api_base) -> litellm's provider name for it; valid while the custom providers stay the same
provider_guesses: dict[tuple[str, str | None], str] = {}


def provider_of(model: str) -> str:
    return model.split("/", 1)[0] if "/" in model else "openai"


def provider_guess(litellm: Any, model: str, api_base: str | None) -> str:
    """litellm's provider name for ``model`` (its lookup walks provider lists, so it is remembered)."""
    known = provider_guesses.get((model, api_base))
    if known is not None:
        return known
    try:
        guess = str(litellm.get_llm_provider(model, api_base=api_base)[1])
    except Exception:
        guess = provider_of(model)
    if len(provider_guesses) < 1024:
        provider_guesses[(model, api_base)] = guess
    return guess
