"""Importing litellm the way flow-engine needs it: once, lazily, with no network and no banners.

litellm fetches a price map from the internet at import unless told to use its bundled copy, prints
"Give Feedback" banners on errors, and takes seconds to import; so nothing imports it but this module,
and only when a model is actually called.
"""

from __future__ import annotations

import os
import threading
from typing import Any

_lock = threading.Lock()
_litellm: Any = None
_registered_providers: set[str] = set()


def load_litellm() -> Any:
    global _litellm
    if _litellm is not None:
        return _litellm
    with _lock:
        if _litellm is None:
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")
            if os.environ.get("LITELLM_LOG") == "":  # an empty value crashes litellm's import
                del os.environ["LITELLM_LOG"]
            import litellm

            litellm.suppress_debug_info = True
            litellm.telemetry = False
            _litellm = litellm
    return _litellm


def ensure_providers(providers: dict[str, Any]) -> Any:
    """Import litellm and register the plugins' in-process providers (idempotent)."""
    litellm = load_litellm()
    missing = [info for name, info in providers.items() if name not in _registered_providers]
    if missing:
        with _lock:
            entries = [e for e in (litellm.custom_provider_map or []) if e["provider"] not in providers]
            for info in providers.values():
                entries.append({"provider": info.name, "custom_handler": info.handler_factory()})
                _registered_providers.add(info.name)
            litellm.custom_provider_map = entries
            from litellm.utils import custom_llm_setup

            custom_llm_setup()
    return litellm


def provider_of(model: str) -> str:
    return model.split("/", 1)[0] if "/" in model else "openai"
