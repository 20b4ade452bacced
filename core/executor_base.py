"""What an executor plugin implements (:class:`RunExecutor`) and how one is found by name.

Kept below the flow runner so that ``BaseFlow.submit`` can hand a run to an executor without the
runner importing the module that executes submitted runs (``flow_engine.executors``), which sits above
flows. Plugins import these names from ``flow_engine.executors``.
"""

from __future__ import annotations

import os
import secrets
import socket
import weakref
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

from .engine import get_engine
from .errors import ConfigurationError, FlowEngineError, UsageError

if TYPE_CHECKING:  # pragma: no cover
    from .engine import Engine
    from .flows import BaseFlow
    from .plugin_types import ExecutorInfo
    from .storage import RunRecord


class ExecutorUnavailable(FlowEngineError):
    """The executor could not take the run (its broker is unreachable, say); the run is marked failed."""


class RunExecutor(ABC):
    """What an executor plugin's factory returns."""

    name: str = ""

    @abstractmethod
    async def enqueue(self, run: RunRecord, flow_class: type[BaseFlow]) -> None:
        """Hand over a run that is stored (committed) as ``pending``. Must not block the event loop.

        ``flow_class`` is the class that submitted it: an in-process executor can run it as it is;
        one that sends the run elsewhere relies on the stored ``flow_ref`` instead. Raise
        :class:`ExecutorUnavailable` with a readable reason when the run cannot be handed over; the
        caller then marks the run failed with that reason.
        """

    def run_worker(self, *, concurrency: int, queues: list[str], loglevel: str) -> int:
        """Run a worker of this executor in the current process until it is stopped (``flow worker``)."""
        raise UsageError(f"executor '{self.name}' has no workers; `flow worker` needs one that does (celery)")

    def close(self) -> None:  # noqa: B027 - optional
        """Release connections."""


_instances: weakref.WeakKeyDictionary[Any, dict[str, RunExecutor]] = weakref.WeakKeyDictionary()


def executor_info(name: str, engine: Engine | None = None) -> ExecutorInfo:
    """The registered executor ``name``; an unknown name lists the installed ones."""
    executors = (engine or get_engine()).plugins.executors()
    if name not in executors:
        installed = ", ".join(f"{n} ({i.plugin})" for n, i in sorted(executors.items())) or "none"
        raise ConfigurationError(f"no executor named '{name}'; installed executors: {installed}")
    return executors[name]


def get_executor(name: str | None = None, engine: Engine | None = None) -> RunExecutor:
    """The executor ``name`` (default ``FLOW_ENGINE_EXECUTOR``, else the plugins' default executor:
    the built-in ``local``), built once per engine.

    Building it checks its configuration (a missing broker URL, an uninstalled extra): that error comes
    before anything is written.
    """
    engine = engine or get_engine()
    name = name or engine.settings.executor or engine.plugins.default_executor()
    if name is None:
        raise ConfigurationError(
            "no executor is registered (are the executor plugins disabled? see `flow plugins`)"
        )
    built = _instances.setdefault(engine, {})
    if name not in built:
        info = executor_info(name, engine)
        executor = info.factory(engine)
        if not isinstance(executor, RunExecutor):
            raise ConfigurationError(
                f"executor '{name}' (plugin '{info.plugin}') built a {type(executor).__name__}, "
                "not a flow_engine.executors.RunExecutor"
            )
        executor.name = executor.name or name
        built[name] = executor
    return built[name]


def worker_id(kind: str) -> str:
    """Who executes a run, as stored in ``flow_runs.claimed_by``: executor, host, pid and a nonce
    (a pid can be reused by the next process; the nonce tells two lives of one pid apart)."""
    return f"{kind}:{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
