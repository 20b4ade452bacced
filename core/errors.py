"""Exceptions of flow-engine.

Two families matter to callers: ``UsageError`` (the caller asked for something invalid: bad inputs,
an unknown flow, a missing prompt; the CLI exits 2) and ``FlowEngineError`` raised while a flow runs
(the run is recorded as failed; the CLI exits 1).
"""

from __future__ import annotations

from typing import Any


class FlowEngineError(Exception):
    """Base class of every error flow-engine raises on purpose."""


class UsageError(FlowEngineError):
    """The request itself is wrong; fixing the call, not retrying, is the cure (CLI exit code 2)."""


class InputValidationError(UsageError, ValueError):
    """Inputs of a flow or step failed pydantic validation; the message names every bad field."""

    def __init__(self, owner: str, errors: list[dict[str, Any]]):
        self.owner = owner
        self.errors = errors
        lines = [f"invalid inputs for {owner}:"]
        for err in errors:
            loc = ".".join(str(part) for part in err.get("loc", ())) or "(inputs)"
            lines.append(f"  - {loc}: {err.get('msg', 'invalid')}")
        super().__init__("\n".join(lines))

    @classmethod
    def from_pydantic(cls, owner: str, exc: Any) -> InputValidationError:
        return cls(owner, [{"loc": e["loc"], "msg": e["msg"]} for e in exc.errors()])


class ConfigurationError(UsageError):
    """Settings, plugins or environment are inconsistent (unknown backend, conflicting plugins...)."""


class PromptError(UsageError):
    """A prompt template is missing, escapes its folder, or uses an undefined variable."""


class PluginConflictError(ConfigurationError):
    """Two plugins claim the same name for a step type, backend or provider."""


class NotFoundError(UsageError):
    """A flow, run or record that the caller named does not exist."""


class RunTaken(UsageError):
    """A run to resume is already executed, or being resumed, by another process (it claimed it)."""


class StorageError(FlowEngineError):
    """The database refused or failed a read or write; the record named in the message was not stored."""


class LLMError(FlowEngineError):
    """An LLM call failed for good (after the configured retries)."""


class StructuredOutputError(LLMError):
    """The model kept answering with output that does not validate against ``Outputs``."""


class RunCancelled(FlowEngineError):
    """The run was cancelled (``flow cancel``); it stopped at a step boundary."""


class RunWaiting(FlowEngineError):
    """The run stopped at ``wait_for_input`` and is recorded ``waiting``: nothing runs until it is
    answered (``respond_to_run(run_id, name, data)`` or ``flow respond``), from this process or any
    other. ``run_id``, ``name``, ``prompt`` and ``schema`` say what it waits for."""

    def __init__(self, run_id: Any, name: str, prompt: str | None, schema: dict[str, Any]):
        super().__init__(
            f"run {run_id} is waiting for input '{name}'"
            + (f": {prompt}" if prompt else "")
            + f"; answer with `flow respond {run_id} {name} --input KEY=VALUE` or respond_to_run()"
        )
        self.run_id, self.name, self.prompt, self.schema = run_id, name, prompt, schema


class BudgetExceeded(FlowEngineError):
    """The run reached its ``max_cost`` or ``max_tokens``; it stopped at a step boundary."""


class ResumeMismatch(FlowEngineError):
    """On resume, the flow's code called a different step where the original run completed one."""
