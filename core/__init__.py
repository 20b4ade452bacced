"""flow-engine: typed, persisted, resumable LLM workflows. The public API and its guide: ``flow_engine.public``."""

from .public import *  # noqa: F403
from .public import __all__ as _public_all

__version__ = "0.1.0"
__all__ = [*_public_all, "__version__"]
