"""Built-in plugins. Each module is a plugin registered exactly as a third-party one would be: the
engine lists them in code (``flow_engine.plugin_manager.DEFAULT_PLUGINS``) where a third party uses
the ``flow_engine`` entry-point group, so any of them can be disabled with
``FLOW_ENGINE_DISABLE_PLUGINS``."""
