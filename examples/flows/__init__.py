"""Example flows shipped with flow-engine and registered through the ``flow_engine.flows`` entry points."""
