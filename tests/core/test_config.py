"""Settings: where things go when nothing says otherwise; configure() refuses names it does not know."""

from __future__ import annotations

import types
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings, SettingsConfigDict

from flow_engine.config import Settings
from flow_engine.engine import Engine, configure, get_engine
from flow_engine.errors import ConfigurationError
from flow_engine.plugin import hookimpl, hookspec


@pytest.mark.parametrize(
    ("database_url", "expected"),
    [
        ("sqlite:////srv/runs/flow.db", Path("/srv/runs/artifacts")),
        ("sqlite+pysqlite:////srv/runs/flow.db", Path("/srv/runs/artifacts")),
        ("sqlite:////srv/runs/flow.db?timeout=30", Path("/srv/runs/artifacts")),
        ("sqlite:///relative/flow.db", Path("relative/artifacts")),
        ("sqlite:///with%20space/flow.db", Path("with space/artifacts")),  # as SQLAlchemy decodes it
        ("sqlite:///file:/srv/runs/flow.db?uri=true&mode=rwc", Path("/srv/runs/artifacts")),
        ("sqlite:///file:///srv/runs/flow.db?uri=true", Path("/srv/runs/artifacts")),
        ("sqlite://", None),
        ("sqlite:///:memory:", None),
        ("memory://", None),
        ("postgresql+psycopg://postgres@127.0.0.1/test", None),
    ],
)
def test_artifacts_go_beside_a_sqlite_file_else_in_the_data_folder(database_url, expected, tmp_path):
    engine = Engine(Settings(database_url=database_url, data_dir=tmp_path))
    assert engine.artifacts_dir == (expected or tmp_path / "artifacts")


def test_an_artifacts_dir_that_is_set_wins(tmp_path):
    settings = Settings(database_url="sqlite:////srv/runs/flow.db", artifacts_dir=tmp_path / "pictures")
    assert Engine(settings).artifacts_dir == tmp_path / "pictures"


def test_configure_refuses_a_misspelt_setting_with_the_closest_name(tmp_path):
    before = configure(database_url=f"sqlite:///{tmp_path}/a.db")
    with pytest.raises(ConfigurationError, match="unknown setting 'databse_url'; did you mean database_url"):
        configure(databse_url="sqlite:///x.db")
    assert get_engine() is before  # nothing replaced


class GreetSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FLOW_ENGINE_", extra="ignore")
    greeting_word: str = "hello"


def test_configure_accepts_a_plugin_setting(monkeypatch, tmp_path):
    monkeypatch.setattr(
        "flow_engine.plugin_manager.DEFAULT_PLUGINS", (("greet", "tests.core.test_config"),), raising=True
    )
    engine = configure(greeting_word="hi", database_url=f"sqlite:///{tmp_path}/b.db")
    assert engine.plugin_settings(GreetSettings).greeting_word == "hi"
    assert engine.settings.database_url == f"sqlite:///{tmp_path}/b.db"
    with pytest.raises(ConfigurationError, match="did you mean greeting_word"):
        configure(greting_word="hi")
    monkeypatch.setenv("FLOW_ENGINE_GREETING_WORD", "ahoy")
    assert configure().plugin_settings(GreetSettings).greeting_word == "ahoy"


class HookAdder:
    """A plugin adding its own hook (``register_hookspecs``), as the news plugin does."""

    @hookimpl
    def register_hookspecs(self, register):
        register(Spec)


def _register_gadgets(register):
    """Register gadgets."""


# hookspecs live in a module, as the news plugin's do (a class's functions would need ``self``)
Spec = types.ModuleType("gadget_hookspecs")
Spec.register_gadgets = hookspec(_register_gadgets)


def test_a_plugin_can_add_hookspecs_through_register_hookspecs():
    registry = get_engine().plugins
    registry.register(HookAdder(), name="adder")
    assert registry.pm.hook.register_gadgets.has_spec()


@hookimpl
def register_settings(register):  # this module is the "greet" plugin of the test above
    register(GreetSettings)
