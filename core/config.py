"""Settings read from ``FLOW_ENGINE_*`` environment variables (pydantic-settings).

Read once per engine, on first use, never at import; ``flow_engine.configure()`` overrides them in code.
Plugins keep their own settings in their own classes (``register_settings``), read the same way.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

S = TypeVar("S", bound=BaseSettings)

APP_NAME = "flow-engine"


def default_data_dir() -> Path:
    """The per-user data folder (platformdirs), where the default database and artifacts live."""
    from platformdirs import user_data_path

    return user_data_path(APP_NAME, appauthor=False)


class Settings(BaseSettings):
    """Every environment variable flow-engine reads. Documented in docs/configuration.md."""

    model_config = SettingsConfigDict(env_prefix="FLOW_ENGINE_", extra="ignore")

    model: str | None = Field(default=None, description="Default litellm model string.")
    image_model: str | None = Field(default=None, description="Default model of image steps.")
    api_base: str | None = Field(default=None, description="Base URL of an OpenAI-compatible server.")
    api_key: str | None = Field(default=None, description="API key passed to litellm (never stored).")
    database_url: str | None = Field(default=None, description="Storage URL; default a SQLite file.")
    data_dir: Path | None = Field(default=None, description="Folder for the default database/artifacts.")
    artifacts_dir: Path | None = Field(default=None, description="Where generated images are saved.")
    prompts_path: str | None = Field(default=None, description="os.pathsep-separated prompt folders.")
    plugins: str | None = Field(default=None, description="Comma list: only these third-party plugins.")
    disable_plugins: str | None = Field(default=None, description="Comma list of plugins not to load.")
    max_retries: int = Field(default=3, ge=0, description="Retries of a transient LLM failure.")
    retry_initial_delay: float = Field(default=0.5, ge=0, description="First backoff delay, seconds.")
    retry_max_delay: float = Field(default=30.0, ge=0, description="Cap of one backoff delay, seconds.")
    request_timeout: float = Field(
        default=120.0, gt=0, description="Timeout of one LLM attempt, first to last byte, seconds."
    )
    timeout_retries: int = Field(
        default=1, ge=0, description="Retries of an LLM attempt that timed out (at most max_retries)."
    )
    max_output_tokens: int = Field(
        default=2048, ge=0, description="Default limit on an LLM step's answer, in tokens (0: none)."
    )
    rate_limits: str | None = Field(
        default=None,
        description="Rate limits per model, e.g. openai/*=500rpm,200000tpm;anthropic/*=50rpm.",
    )
    rate_limits_redis: str | None = Field(
        default=None, description="redis:// URL: share the rate limits with every process using it."
    )
    cache: bool = Field(
        default=False, description="Answer repeated LLM calls from the response cache (docs/caching.md)."
    )
    cache_ttl: float = Field(
        default=0, ge=0, description="Seconds a cached answer is kept (0: until `flow cache clear`)."
    )
    structured_max_reasks: int = Field(default=2, ge=0, description="Re-asks after invalid output.")
    gc_freeze: bool = Field(
        default=True, description="gc.freeze() litellm's import-time objects (shorter GC pauses)."
    )
    llm_processes: int = Field(
        default=0,
        ge=0,
        le=64,
        description="Worker processes making the calls to network providers (0: this process).",
    )
    heartbeat_interval: float = Field(default=10.0, gt=0, description="Seconds between heartbeats.")
    stale_after: float = Field(
        default=60.0, gt=0, description="A running run whose heartbeat is older than this is crashed."
    )
    retention: str | None = Field(
        default=None,
        description="Age past which `flow runs prune` deletes finished runs, e.g. 90d (m/h/d/w).",
    )
    # background execution (docs/background.md)
    executor: str | None = Field(
        default=None,
        description="Executor of submit() / flow run --background; default: the one a plugin marks as the "
        "default (the built-in local executor).",
    )

    @field_validator("api_base")
    @classmethod
    def _no_credentials_in_api_base(cls, value: str | None) -> str | None:
        return check_api_base(value)

    def resolved_data_dir(self) -> Path:
        return self.data_dir or default_data_dir()

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.resolved_data_dir() / 'flow_engine.db'}"


def check_api_base(url: str | None) -> str | None:
    """Refuse an ``api_base`` with ``user:password@``: the HTTP client will not send it beside the
    ``Authorization`` header, so every call would fail as if the server were down (and the password
    would travel in every error text)."""
    if url and "@" in url.split("://", 1)[-1].split("/", 1)[0]:
        raise ValueError(
            "must not contain user:password@ (the HTTP client refuses URL credentials beside the API "
            "key's Authorization header); give the key as FLOW_ENGINE_API_KEY, or another header in "
            "the step's llm_params extra_headers"
        )
    return url


def read_settings(**overrides: Any) -> Settings:
    """The settings from ``FLOW_ENGINE_*`` variables and ``overrides``; a bad value is a
    ``ConfigurationError`` naming the variable (exit code 2 in the CLI), never a traceback."""
    return read_settings_class(Settings, overrides)


def settings_given(cls: type[BaseSettings], overrides: dict[str, Any]) -> bool:
    """Whether any of ``cls``'s settings is given, in ``overrides`` or as an environment variable (its
    prefixed name, or its alias); a class reading an env file or secrets folder always counts as given.
    If none is, its defaults stand and there is nothing to check (building a settings class reads the
    whole environment: too dear to do for every plugin's on every engine)."""
    if any(name in overrides for name in cls.model_fields):
        return True
    config = cls.model_config
    if config.get("env_file") or config.get("secrets_dir"):
        return True
    variables = {name for names in _variable_names(cls).values() for name in names}
    return any(key.upper() in variables for key in os.environ)


def _variable_names(cls: type[BaseSettings]) -> dict[str, list[str]]:
    """The environment variables pydantic-settings reads for each of ``cls``'s fields, upper-cased."""
    prefix = str(cls.model_config.get("env_prefix") or "")
    found = {}
    for name, field in cls.model_fields.items():
        names = [f"{prefix}{name}".upper()]
        for alias in (field.validation_alias, field.alias):
            for choice in getattr(alias, "choices", [alias]):  # AliasChoices: each; AliasPath: its head
                head = choice.path[0] if hasattr(choice, "path") else choice
                if isinstance(head, str) and head.upper() not in names:
                    names.append(head.upper())
        found[name] = names
    return found


def _variable_given(cls: type[BaseSettings], name: str) -> str:
    """The variable that gave the setting an error names (a field or one of its aliases): the one set in
    the environment among the field's names, else its first."""
    names = _variable_names(cls)
    field = name if name in names else next((f for f, found in names.items() if name.upper() in found), None)
    candidates = names.get(field, [name.upper()]) if field is not None else [name.upper()]
    given = {key.upper() for key in os.environ}
    return next((n for n in candidates if n in given), candidates[0])


def read_settings_class(cls: type[S], overrides: dict[str, Any]) -> S:
    """``cls(**overrides)`` (core or a plugin's settings), a bad value a ``ConfigurationError``."""
    from .errors import ConfigurationError

    try:
        return cls(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = str(error["loc"][0]) if error["loc"] else "?"
            where = name if name in overrides else _variable_given(cls, name)
            problems.append(f"{where}: {error['msg'].removeprefix('Value error, ')}")
        raise ConfigurationError("invalid setting " + "; ".join(problems)) from None
