"""A setting that does not parse is a ConfigurationError naming it, never a pydantic traceback."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import AliasChoices, BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from flow_engine import BaseFlow, configure
from flow_engine.config import read_settings_class, settings_given
from flow_engine.engine import Engine
from flow_engine.errors import ConfigurationError
from flow_engine.plugin import hookimpl


def test_a_bad_environment_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("FLOW_ENGINE_MAX_RETRIES", "abc")
    with pytest.raises(ConfigurationError, match=r"invalid setting FLOW_ENGINE_MAX_RETRIES: .*integer"):
        _ = Engine().settings


def test_a_bad_configure_value_names_the_argument():
    with pytest.raises(ConfigurationError, match=r"invalid setting request_timeout: .*greater than 0"):
        configure(request_timeout=0)


def test_credentials_in_the_api_base_are_refused_without_repeating_them(monkeypatch):
    monkeypatch.setenv("FLOW_ENGINE_API_BASE", "https://user:s3cr3t-pass@gateway.example/v1")
    with pytest.raises(ConfigurationError) as info:
        _ = Engine().settings
    assert "FLOW_ENGINE_API_BASE: must not contain user:password@" in str(info.value)
    assert "s3cr3t" not in str(info.value)


class _Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FLOW_ENGINE_", extra="ignore")
    widget_count: int = 1


class _WidgetPlugin:
    @hookimpl
    def register_settings(self, register: Any) -> None:
        register(_Settings)


class _Flow(BaseFlow):
    flow_name = "config_errors_flow"

    async def _execute_flow_logic(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return {}


async def test_a_bad_plugin_setting_fails_the_run_before_its_row_is_written(monkeypatch, tmp_path):
    monkeypatch.setenv("FLOW_ENGINE_WIDGET_COUNT", "many")
    engine = configure(database_url="memory://", data_dir=tmp_path)
    engine.plugins.register(_WidgetPlugin(), name="widgets")
    for attempt in ("execute", "submit", "again"):  # raised on every try, not only the first
        with pytest.raises(ConfigurationError, match=r"invalid setting FLOW_ENGINE_WIDGET_COUNT: .*integer"):
            if attempt == "submit":
                await _Flow().submit({}, executor="local")
            else:
                await _Flow().execute({})
    assert engine.store.list_runs() == []


class _BrokenSettingsPlugin:
    @hookimpl
    def register_settings(self, register: Any) -> None:
        raise ImportError("its settings module is missing")


async def test_a_plugin_whose_register_settings_raises_fails_alone(tmp_path):
    engine = configure(database_url="memory://", data_dir=tmp_path)
    engine.plugins.register(_BrokenSettingsPlugin(), name="broken_settings")
    with pytest.warns(RuntimeWarning, match="register_settings raised ImportError"):
        assert (await _Flow().execute({})) == {}  # the run goes on
    [broken] = [s for s in engine.plugins.statuses if s.name == "broken_settings"]
    assert broken.status == "failed"


class _AliasedSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FLOW_ENGINE_", extra="ignore")
    gadget_limit: int = Field(1, validation_alias=AliasChoices("GADGET_LIMIT", "GADGETS"))


class _GadgetPlugin:
    @hookimpl
    def register_settings(self, register: Any) -> None:
        register(_AliasedSettings)


@pytest.mark.parametrize("variable", ["GADGET_LIMIT", "GADGETS"])
async def test_a_bad_plugin_setting_given_by_its_alias_is_refused_too(monkeypatch, tmp_path, variable):
    monkeypatch.setenv(variable, "lots")
    engine = configure(database_url="memory://", data_dir=tmp_path)
    engine.plugins.register(_GadgetPlugin(), name="gadgets")
    with pytest.raises(ConfigurationError, match=rf"invalid setting {variable}: .*integer"):
        await _Flow().execute({})
    assert engine.store.list_runs() == []


class _PrefixedAlias(BaseSettings):  # the prefix applies to the alias too
    model_config = SettingsConfigDict(env_prefix="FLOW_ENGINE_", env_prefix_target="alias", extra="ignore")
    gizmo_width: int = Field(1, validation_alias="GIZMO_W")


class _Gizmo(BaseModel):
    size: int = 1


class _Nested(BaseSettings):  # FLOW_ENGINE_GIZMO__SIZE sets gizmo.size
    model_config = SettingsConfigDict(env_prefix="FLOW_ENGINE_", env_nested_delimiter="__", extra="ignore")
    gizmo: _Gizmo = _Gizmo()


class _CaseSensitive(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FLOW_ENGINE_", case_sensitive=True, extra="ignore")
    gizmo_depth: int = 1


class _AliasOnly(BaseSettings):  # read from its alias alone, not FLOW_ENGINE_GIZMO_LIMIT
    model_config = SettingsConfigDict(env_prefix="FLOW_ENGINE_", extra="ignore")
    gizmo_limit: int = Field(1, validation_alias=AliasChoices("GIZMO_LIMIT_ALIAS", "GIZMOS"))


class _AliasOrName(_AliasOnly):  # read from its alias first, then FLOW_ENGINE_GIZMO_LIMIT
    model_config = SettingsConfigDict(populate_by_name=True)


class _OwnSources(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FLOW_ENGINE_", extra="ignore")
    gizmo_count: int = 1

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, *others):
        return (init_settings, env_settings)  # where a vault source would go


@pytest.mark.parametrize(
    ("cls", "variable"),
    [
        (_PrefixedAlias, "FLOW_ENGINE_GIZMO_W"),
        (_Nested, "FLOW_ENGINE_GIZMO__SIZE"),
        (_CaseSensitive, "FLOW_ENGINE_gizmo_depth"),
    ],
)
def test_a_variable_pydantic_settings_reads_is_given_and_named_as_set(monkeypatch, cls, variable):
    assert not settings_given(cls, {})
    monkeypatch.setenv(variable, "lots")
    assert settings_given(cls, {})
    with pytest.raises(ConfigurationError, match=rf"invalid setting {variable}: .*integer"):
        read_settings_class(cls, {})


@pytest.mark.parametrize(
    ("cls", "variable"),
    [
        (_PrefixedAlias, "GIZMO_W"),  # the alias without its prefix
        (_CaseSensitive, "FLOW_ENGINE_GIZMO_DEPTH"),  # another case
        (_AliasOnly, "FLOW_ENGINE_GIZMO_LIMIT"),  # the name of a field with an alias
    ],
)
def test_a_variable_pydantic_settings_ignores_is_not_given(monkeypatch, cls, variable):
    monkeypatch.setenv(variable, "lots")
    assert not settings_given(cls, {})
    cls()  # indeed ignored


def test_a_class_choosing_its_own_sources_always_counts_as_given():
    assert settings_given(_OwnSources, {})


@pytest.mark.parametrize("cls", [_AliasOnly, _AliasOrName])
def test_a_bad_value_names_the_variable_read_first(monkeypatch, cls):
    monkeypatch.setenv("FLOW_ENGINE_GIZMO_LIMIT", "5")
    monkeypatch.setenv("GIZMOS", "lots")  # an alias: read before the field's name
    with pytest.raises(ConfigurationError, match=r"invalid setting GIZMOS: .*integer"):
        read_settings_class(cls, {})


def test_a_bad_keyword_argument_given_by_its_alias_names_the_field(monkeypatch):
    monkeypatch.setenv("GIZMOS", "5")  # pydantic reports the alias; the value is not the variable's
    with pytest.raises(ConfigurationError, match=r"invalid setting gizmo_limit: .*integer"):
        read_settings_class(_AliasOnly, {"gizmo_limit_alias": "lots"})
