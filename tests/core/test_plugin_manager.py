"""PluginRegistry: loading entry points forgivingly, selecting plugins, conflicts, in-code plugins."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from flow_engine.errors import ConfigurationError
from flow_engine.plugin import hookimpl
from flow_engine.plugin_manager import BUILTIN_DISTRIBUTION, DEFAULT_PLUGINS, PluginRegistry
from tests.cli.conftest import Distributions

STEP_TYPE_PLUGIN = """
from flow_engine import BaseStep
from flow_engine.plugin import StepTypeInfo, hookimpl


@hookimpl
def register_step_types(register):
    register(StepTypeInfo("{step_type}", BaseStep))
"""


@pytest.fixture
def dists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    made = Distributions(tmp_path / "site", monkeypatch)
    yield made
    made.cleanup()


def _registry(**kwargs) -> tuple[PluginRegistry, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        registry = PluginRegistry(**kwargs)
    return registry, [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]


def _status(registry: PluginRegistry, name: str):
    [status] = [s for s in registry.statuses if s.name == name]
    return status


def test_builtins_load_with_their_distribution_and_version():
    registry, warned = _registry()
    assert not [w for w in warned if "flow-engine plugin" in w]
    status = _status(registry, "structured")
    assert (status.status, status.distribution, status.builtin) == ("loaded", "flow-engine", True)
    assert status.version
    assert {"python", "unstructured_llm", "structured_llm", "image_generation"} <= set(registry.step_types())


def test_import_failure_is_recorded_and_warned_not_raised(dists):
    dists.make(
        "crashplug", "raise RuntimeError('no GPU here')\n", {"flow_engine": {"crashplug": "crashplug"}}
    )
    registry, warned = _registry()
    status = _status(registry, "crashplug")
    assert status.status == "failed"
    assert status.error == "RuntimeError: no GPU here"
    [message] = [w for w in warned if "crashplug" in w]
    assert "flow-engine plugin 'crashplug' (crashplug) failed to load: RuntimeError: no GPU here" in message
    assert "FLOW_ENGINE_DISABLE_PLUGINS=crashplug" in message
    assert "python" in registry.step_types()  # the rest still work


def test_disabled_plugins_are_not_imported(dists):
    dists.make("crashplug", "raise RuntimeError('imported')\n", {"flow_engine": {"crashplug": "crashplug"}})
    registry, warned = _registry(disabled={"crashplug"})
    assert _status(registry, "crashplug").status == "disabled"
    assert not [w for w in warned if "crashplug" in w]


def test_only_selects_third_party_plugins_builtins_stay(dists):
    dists.make("alpha", STEP_TYPE_PLUGIN.format(step_type="alpha_type"), {"flow_engine": {"alpha": "alpha"}})
    dists.make("beta", STEP_TYPE_PLUGIN.format(step_type="beta_type"), {"flow_engine": {"beta": "beta"}})
    registry, _ = _registry(only={"alpha"})
    assert _status(registry, "alpha").status == "loaded"
    assert _status(registry, "beta").status == "not-selected"
    assert "alpha_type" in registry.step_types() and "beta_type" not in registry.step_types()
    assert _status(registry, "unstructured").status == "loaded"


def test_two_plugins_one_step_type_is_one_error_naming_both(dists):
    for name in ("one", "two"):
        dists.make(name, STEP_TYPE_PLUGIN.format(step_type="same"), {"flow_engine": {name: name}})
    registry, _ = _registry()
    with pytest.warns(RuntimeWarning, match="step type 'same' is registered by two plugins: 'one' and 'two'"):
        types = registry.step_types()
    # reported, not fatal: the contested name is left out, everything else stays usable
    assert "same" not in types and "python" in types
    assert "'one' and 'two'" in registry.step_type_conflicts["same"]
    for name in ("one", "two"):
        assert _status(registry, name).status == "loaded"
        assert "step type 'same' is registered by two plugins" in (_status(registry, name).error or "")
    assert "same" not in registry.provides().get("one", {}).get("step types", [])


def test_a_plugin_claiming_a_builtin_name_conflicts(dists):
    dists.make(
        "usurper", STEP_TYPE_PLUGIN.format(step_type="python"), {"flow_engine": {"usurper": "usurper"}}
    )
    registry, _ = _registry()
    with pytest.warns(RuntimeWarning, match="'python_step' and 'usurper'"):
        assert "python" not in registry.step_types()


def test_a_register_hook_that_raises_marks_the_plugin_failed(dists):
    source = (
        "from flow_engine.hookspecs import hookimpl\n\n"
        "@hookimpl\ndef register_step_types(register):\n    raise KeyError('oops')\n"
    )
    dists.make("hookfail", source, {"flow_engine": {"hookfail": "hookfail"}})
    registry, _ = _registry()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        types = registry.step_types()
    assert "python" in types
    status = _status(registry, "hookfail")
    assert status.status == "failed"
    assert status.error == "register_step_types raised KeyError: 'oops'"
    assert any("hookfail" in str(w.message) for w in caught)


def test_same_entry_point_name_in_two_distributions(dists):
    dists.make("dist-x", "", {"flow_engine": {"samename": "dist_x"}})
    dists.make("dist-y", "", {"flow_engine": {"samename": "dist_y"}})
    registry, warned = _registry()
    statuses = [s for s in registry.statuses if s.name == "samename"]
    assert sorted(s.status for s in statuses) == ["failed", "loaded"]
    [failed] = [s for s in statuses if s.status == "failed"]
    assert "plugin name 'samename' is already taken by" in failed.error
    assert any("samename" in w for w in warned)


def test_in_code_plugin_register_and_unregister():
    registry, _ = _registry(builtins=())  # the built-in otel plugin implements before_step too

    class Watcher:
        @hookimpl
        def before_step(self, event):
            pass

    name = registry.register(Watcher(), name="watcher")
    assert registry.has_impls("before_step")
    assert _status(registry, "watcher").distribution is None
    assert registry.provides()["watcher"] == {"hooks": ["before_step"]}
    with pytest.raises(ConfigurationError, match="'watcher' is already registered"):
        registry.register(Watcher(), name="watcher")
    registry.unregister(name)
    assert not registry.has_impls("before_step")
    assert not [s for s in registry.statuses if s.name == "watcher"]


def test_a_plugin_registered_by_another_thread_while_step_hooks_are_looked_up_is_not_missed(monkeypatch):
    """The registry remembers whether any plugin listens to the step hooks. A registration from another
    thread in the middle of that lookup must not leave the old answer ("nobody") remembered."""
    import threading

    class Listener:
        @hookimpl
        def before_step(self, event):
            pass

    registry = PluginRegistry(only=set(), disabled=set())
    looking_up = PluginRegistry.has_impls
    registering = threading.Thread(target=registry.register, args=(Listener(),), kwargs={"name": "late"})

    def has_impls_while_another_thread_registers(self, hook_name):
        answer = looking_up(self, hook_name)
        if not registering.is_alive() and registering.ident is None:
            registering.start()
            registering.join(timeout=0.5)  # done by now, unless the lookup holds the registry's lock
        return answer

    monkeypatch.setattr(PluginRegistry, "has_impls", has_impls_while_another_thread_registers)
    registry.step_hooks_listened()
    registering.join()
    assert registry.step_hooks_listened() is True


MISSPELT_PLUGIN = """
from flow_engine.plugin import hookimpl


@hookimpl
def after_steps(event):
    pass
"""


def test_a_misspelt_hook_fails_its_plugin_naming_the_closest_hook_the_rest_load(dists):
    dists.make("typo", MISSPELT_PLUGIN, {"flow_engine": {"typo": "typo"}})
    dists.make("alpha", STEP_TYPE_PLUGIN.format(step_type="alpha_type"), {"flow_engine": {"alpha": "alpha"}})
    registry, warned = _registry()
    status = _status(registry, "typo")
    assert status.status == "failed"
    assert status.error == "implements the unknown hook 'after_steps' (did you mean 'after_step'?)"
    assert [w for w in warned if "'typo'" in w and "after_steps" in w]
    assert not registry.pm.has_plugin("typo")
    assert "alpha_type" in registry.step_types()
    registry.pm.check_pending()  # nothing unknown is left registered


def test_built_ins_come_from_code_not_from_installed_metadata():
    registry, _ = _registry()
    assert [s.name for s in registry.statuses[: len(DEFAULT_PLUGINS)]] == [n for n, _ in DEFAULT_PLUGINS]
    assert {s.distribution for s in registry.statuses} == {BUILTIN_DISTRIBUTION}  # no stale duplicates


def test_an_in_code_plugin_with_an_unknown_hook_is_refused():
    registry, _ = _registry()

    class Typo:
        @hookimpl
        def befor_flow(self, event):
            pass

    with pytest.raises(
        ConfigurationError, match="unknown hook 'befor_flow' \\(did you mean 'before_flow'\\?\\)"
    ):
        registry.register(Typo(), name="typo")
    assert not registry.pm.has_plugin("typo")


def test_a_plugin_adds_its_own_hookspecs_and_another_implements_them():
    registry, _ = _registry()
    assert registry.pm.hook.register_news_sources.has_spec()  # added by the news plugin
    registry.register(NewsAdder(), name="adder")
    assert "extra" in registry.collect_named("register_news_sources", "news source")
    assert registry.provides()["adder"]["news sources"] == ["extra"]


def test_without_the_news_plugin_its_hook_is_unknown():
    registry, _ = _registry(disabled={"news"})
    assert not hasattr(registry.pm.hook, "register_news_sources")
    with pytest.raises(ConfigurationError, match="unknown hook 'register_news_sources'"):
        registry.register(NewsAdder(), name="adder")


class NewsAdder:
    @hookimpl
    def register_news_sources(self, register):
        from flow_engine.plugins.news import NewsSourceInfo

        register(NewsSourceInfo("extra", object))
