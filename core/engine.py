"""The process-wide engine: settings, plugins and the open store, each created on first use.

``configure()`` replaces it (tests, apps that set things in code instead of environment variables).
"""

from __future__ import annotations

import difflib
import os
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import ConfigurationError

if TYPE_CHECKING:  # pragma: no cover - imported lazily: pydantic-settings alone costs ~80 ms
    from pydantic_settings import BaseSettings

    from .config import Settings
    from .plugin_manager import PluginRegistry
    from .storage import RunStore

OFFLINE_MODEL = "offline/default"
S = TypeVar("S", bound="BaseSettings")


class Engine:
    def __init__(self, settings: Settings | None = None, plugin_overrides: dict[str, Any] | None = None):
        self._settings = settings
        self._plugin_overrides = plugin_overrides or {}
        self._plugin_settings: dict[type, Any] = {}
        self._plugins: PluginRegistry | None = None
        self._store: RunStore | None = None
        self._lock = threading.RLock()
        self._offline_notice_shown = False
        self._started = False  # the engine_started hook was called
        self.default_model_overridden_by_cli: str | None = None
        # (settings it was made from, the limiter) of FLOW_ENGINE_RATE_LIMITS; see llm/rate_limits.py
        self.rate_limiter: tuple[Any, Any] | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            with self._lock:
                if self._settings is None:
                    from .config import read_settings

                    self._settings = read_settings()
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

    def ensure_started(self) -> None:
        """The ``engine_started`` hook, once, before the engine's first run or LLM call (before its
        row is written). The plugin settings given (to ``configure()`` or in the environment) are read
        first: a bad value is a ``ConfigurationError`` naming its variable, raised again on every try,
        before anything runs."""
        if self._started:
            return
        from .config import settings_given
        from .errors import PluginConflictError

        try:
            classes = self.plugins.settings_classes()
        except PluginConflictError:  # `flow plugins` and configure() name it; runs go on as before
            classes = []
        for cls in classes:
            if cls not in self._plugin_settings and settings_given(cls, self._plugin_overrides):
                self.plugin_settings(cls)
        with self._lock:
            if not self._started:
                self._started = True
                self.plugins.call_each("engine_started", engine=self)

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

    def plugin_settings(self, cls: type[S]) -> S:
        """A plugin's settings (its ``register_settings`` class): environment variables, overridden by
        ``configure()``. Built once per engine."""
        known = self._plugin_settings.get(cls)
        if known is None:
            with self._lock:
                known = self._plugin_settings.get(cls)
                if known is None:
                    from .config import read_settings_class

                    given = {k: v for k, v in self._plugin_overrides.items() if k in cls.model_fields}
                    known = self._plugin_settings[cls] = read_settings_class(cls, given)
        return known  # type: ignore[no-any-return]

    @property
    def artifacts_dir(self) -> Path:
        """FLOW_ENGINE_ARTIFACTS_DIR; else beside the database file when the storage backend stores in
        one (SQLite); else in the data folder."""
        if self.settings.artifacts_dir:
            return self.settings.artifacts_dir
        url = self.database_url
        try:
            from .storage import pick_backend

            local_path = pick_backend(url, self.plugins.storage_backends()).local_path
            database_file = local_path(url) if local_path is not None else None
        except ConfigurationError:  # an unknown scheme or a malformed URL: opening the store reports it
            database_file = None
        if database_file is not None:
            return database_file.parent / "artifacts"
        return self.settings.resolved_data_dir() / "artifacts"

    def default_model(self) -> str:
        """``FLOW_ENGINE_MODEL``, else the offline model (saying so once on stderr)."""
        if self.settings.model:
            return self.settings.model
        if not self._offline_notice_shown:
            self._offline_notice_shown = True
            warnings.warn(
                "flow-engine: no model configured (FLOW_ENGINE_MODEL); using the offline model "
                f"'{OFFLINE_MODEL}', which makes up its answers.",
                OfflineModelWarning,
                stacklevel=2,
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


class OfflineModelWarning(UserWarning):
    """No model is configured, so the offline model (made-up answers) is used; said once per engine.
    A warning, not a print, so that a program can filter it (``flow`` shows it as one line)."""


def configure(**settings: Any) -> Engine:
    """Replace the engine with one built from these settings (they win over environment variables).

    Example: ``flow_engine.configure(database_url="sqlite:///runs.db", model="openai/gpt-4o-mini")``.
    Plugin settings (``register_settings``) are accepted too; an unknown name is a ``ConfigurationError``
    suggesting the closest one, and the current engine is left as it was.
    """
    from .config import Settings, read_settings

    global _engine
    core = {k: v for k, v in settings.items() if k in Settings.model_fields}
    others = {k: v for k, v in settings.items() if k not in core}
    engine = Engine(read_settings(**core), others)
    if others:
        _check_plugin_settings(engine, others)
    with _engine_lock:
        if _engine is not None:
            _engine.close()
        _engine = engine
        return _engine


def _check_plugin_settings(engine: Engine, given: dict[str, Any]) -> None:
    from .config import Settings

    classes = engine.plugins.settings_classes()
    known = set(Settings.model_fields).union(*(cls.model_fields for cls in classes))
    for name in given:
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ConfigurationError(f"configure() got an unknown setting '{name}'{hint}")
    for cls in classes:
        if any(name in cls.model_fields for name in given):
            engine.plugin_settings(cls)  # a bad value fails here, before the engine is replaced


def reset_engine() -> None:
    """Close the current engine; the next use builds a fresh one from the environment."""
    global _engine
    with _engine_lock:
        if _engine is not None:
            _engine.close()
        _engine = None
