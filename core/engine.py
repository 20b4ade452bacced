"""The process-wide engine: settings, plugins and the open store, each created on first use.

``configure()`` replaces it (tests, apps that set things in code instead of environment variables).
"""

from __future__ import annotations

import os
import sys
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - imported lazily: pydantic-settings alone costs ~80 ms
    from .config import Settings
    from .plugin_manager import PluginRegistry
    from .storage import RunStore

OFFLINE_MODEL = "offline/default"


class Engine:
    def __init__(self, settings: Settings | None = None):
        self._settings = settings
        self._plugins: PluginRegistry | None = None
        self._store: RunStore | None = None
        self._lock = threading.RLock()
        self._offline_notice_shown = False
        self.default_model_overridden_by_cli: str | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            with self._lock:
                if self._settings is None:
                    from .config import Settings

                    self._settings = Settings()
        return self._settings

    def _plugin_selection(self, name: str) -> set[str] | None:
        """FLOW_ENGINE_PLUGINS / _DISABLE_PLUGINS without building Settings (keeps ``flow --help`` fast)."""
        value = (
            getattr(self._settings, name)
            if self._settings is not None
            else os.environ.get(f"FLOW_ENGINE_{name.upper()}")
        )
        if value is None:
            return None
        return {part.strip() for part in value.split(",") if part.strip()}

    @property
    def plugins(self) -> PluginRegistry:
        if self._plugins is None:
            with self._lock:
                if self._plugins is None:
                    from .plugin_manager import PluginRegistry

                    self._plugins = PluginRegistry(
                        only=self._plugin_selection("plugins"),
                        disabled=self._plugin_selection("disable_plugins"),
                    )
        return self._plugins

    @property
    def database_url(self) -> str:
        return self.settings.resolved_database_url()

    @property
    def store(self) -> RunStore:
        if self._store is None:
            with self._lock:
                if self._store is None:
                    from .storage import pick_backend

                    backend = pick_backend(self.database_url, self.plugins.storage_backends())
                    self._store = backend.factory(self.database_url)
        return self._store

    @property
    def store_is_open(self) -> bool:
        return self._store is not None

    def default_model(self) -> str:
        """``FLOW_ENGINE_MODEL``, else the offline model (saying so once on stderr)."""
        if self.settings.model:
            return self.settings.model
        if not self._offline_notice_shown:
            self._offline_notice_shown = True
            print(
                "flow-engine: no model configured (FLOW_ENGINE_MODEL); using the offline model "
                f"'{OFFLINE_MODEL}', which makes up its answers.",
                file=sys.stderr,
            )
        return OFFLINE_MODEL

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None


_engine: Engine | None = None
_engine_lock = threading.Lock()


def get_engine() -> Engine:
    global _engine
    if _engine is None:
        with _engine_lock:
            if _engine is None:
                _engine = Engine()
    return _engine


def configure(**settings: Any) -> Engine:
    """Replace the engine with one built from these settings (they win over environment variables).

    Example: ``flow_engine.configure(database_url="sqlite:///runs.db", model="openai/gpt-4o-mini")``.
    """
    from .config import Settings

    global _engine
    with _engine_lock:
        if _engine is not None:
            _engine.close()
        _engine = Engine(Settings(**settings))
        return _engine


def reset_engine() -> None:
    """Close the current engine; the next use builds a fresh one from the environment."""
    global _engine
    with _engine_lock:
        if _engine is not None:
            _engine.close()
        _engine = None
