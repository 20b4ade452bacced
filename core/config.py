"""Settings read from ``FLOW_ENGINE_*`` environment variables (pydantic-settings).

Read once per engine, on first use, never at import; ``flow_engine.configure()`` overrides them in code.
Plugins keep their own settings in their own classes (``register_settings``), read the same way.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

from pydantic import AliasPath, Field, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, SettingsConfigDict

from .rate_limit_rules import check_rate_limits, check_rate_limits_redis

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
        default=60.0,
        gt=0,
        le=365_000 * 86_400,  # ~1000 years: more cannot be subtracted from now (OverflowError)
        description="A running run whose heartbeat is older than this is crashed.",
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

    @field_validator("rate_limits")
    @classmethod
    def _rate_limits_are_rules(cls, value: str | None) -> str | None:
        return check_rate_limits(value)

    @field_validator("rate_limits_redis")
    @classmethod
    def _rate_limits_redis_is_a_redis_url(cls, value: str | None) -> str | None:
        return check_rate_limits_redis(value)

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
    """Whether any of ``cls``'s settings is given, in ``overrides`` or as an environment variable (one
    of the names pydantic-settings reads, or one under it with ``env_nested_delimiter``); a class reading
    an env file or secrets folder, or choosing its own sources, always counts as given (we cannot see
    them). If none is, its defaults stand and there is nothing to check (building a settings class
    reads the whole environment: too dear to do for every plugin's on every engine)."""
    if any(name in overrides for name in cls.model_fields):
        return True
    config = cls.model_config
    if config.get("env_file") or config.get("secrets_dir") or _own_sources(cls):
        return True
    names = [name for found in _variable_names(cls).values() for name in found]
    return bool(_variables_set(cls, names))


def _own_sources(cls: type[BaseSettings]) -> bool:
    """Whether ``cls`` (or a base of it) overrides ``settings_customise_sources``: then its sources
    are its own business."""
    return any("settings_customise_sources" in vars(base) for base in cls.__mro__ if base is not BaseSettings)


def _fold(cls: type[BaseSettings], name: str) -> str:
    """``name`` as pydantic-settings compares it: as is when case-sensitive, else upper-cased."""
    return name if cls.model_config.get("case_sensitive") else name.upper()


def _variable_names(cls: type[BaseSettings], env_prefix: str | None = None) -> dict[str, list[str]]:
    """The names pydantic-settings reads each of ``cls``'s fields from, in its order (its
    ``_extract_field_info``): the validation aliases (AliasChoices: each; AliasPath: its head), prefixed
    when ``env_prefix_target`` is "alias"/"all"; then the field's name, prefixed unless the target is
    "alias", when it has no alias or ``validate_by_name``/``populate_by_name`` is on. Folded (``_fold``).
    The environment variables by default; with ``env_prefix=""``, the keyword arguments it takes."""
    config = cls.model_config
    prefix = str(config.get("env_prefix") or "") if env_prefix is None else env_prefix
    target = config.get("env_prefix_target", "variable")  # older versions: no such option
    by_alias = config.get("validate_by_alias") is not False
    by_name = config.get("validate_by_name", config.get("populate_by_name", not by_alias))
    found = {}
    for name, field in cls.model_fields.items():
        heads = _alias_heads(field) if by_alias else []
        names = [(prefix if target in ("alias", "all") else "") + head for head in heads]
        if not names or by_name:
            names.append((prefix if target in ("variable", "all") else "") + name)
        found[name] = list(dict.fromkeys(_fold(cls, n) for n in names))
    return found


def _alias_heads(field: FieldInfo) -> list[str]:
    """The keys a field's validation alias reads: a string, each AliasChoices choice, an AliasPath's head."""
    alias = field.validation_alias
    heads = [
        choice.path[0] if isinstance(choice, AliasPath) else choice
        for choice in getattr(alias, "choices", [alias])
    ]
    return [head for head in heads if isinstance(head, str)]


def _variables_set(cls: type[BaseSettings], names: list[str]) -> list[str]:
    """The environment variables set among ``names``, in their order; with ``env_nested_delimiter``,
    then the ones under them (``NAME__KEY``), which pydantic-settings reads into a model or dict field.
    (The environment is folded once per call: this runs at every engine's start, for every plugin.)"""
    keys = set(os.environ) if cls.model_config.get("case_sensitive") else {key.upper() for key in os.environ}
    found = [name for name in names if name in keys]
    delimiter = cls.model_config.get("env_nested_delimiter")
    if delimiter:
        found += [key for name in names for key in keys if key.startswith(name + delimiter)]
    return found


def _variable_given(cls: type[BaseSettings], field: str) -> str:
    """The environment variable to name for a bad ``field``: the first of its names set (the one
    pydantic-settings read), else the first it reads."""
    names = _variable_names(cls)[field]
    return (_variables_set(cls, names) or names)[0]


def _field_of(cls: type[BaseSettings], key: str) -> str | None:
    """The field an error's ``loc[0]`` means: its name, or one of its aliases (pydantic reports the
    key the value was validated under, for an AliasChoices its first choice)."""
    if key in cls.model_fields:
        return key
    return next((name for name, field in cls.model_fields.items() if key in _alias_heads(field)), None)


def read_settings_class(cls: type[S], overrides: dict[str, Any]) -> S:
    """``cls(**overrides)`` (core or a plugin's settings), a bad value a ``ConfigurationError`` naming
    the field when ``overrides`` gave it (under a name ``cls`` takes: overrides beat the environment),
    else its environment variable."""
    from .errors import ConfigurationError

    try:
        return cls(**overrides)
    except ValidationError as exc:
        taken = _variable_names(cls, env_prefix="")
        given = {_fold(cls, key) for key in overrides}
        problems = []
        for error in exc.errors():
            key = str(error["loc"][0]) if error["loc"] else "?"
            field = _field_of(cls, key)
            if field is None:
                where = key if key in overrides else _fold(cls, key)
            elif given.intersection(taken[field]):
                where = field
            else:
                where = _variable_given(cls, field)
            problems.append(f"{where}: {error['msg'].removeprefix('Value error, ')}")
        raise ConfigurationError("invalid setting " + "; ".join(problems)) from None
