"""Built-in plugins. Each module is registered through the ``flow_engine`` entry-point group, exactly as a
third-party plugin would be, so any of them can be disabled with ``FLOW_ENGINE_DISABLE_PLUGINS``."""
