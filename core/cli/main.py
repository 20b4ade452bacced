"""``flow``: the entry point. Commands load lazily; errors become one readable message and an exit code.

Exit codes: 0 success, 1 the flow (or an LLM call) failed, 2 usage or validation error.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import click

from flow_engine.errors import FlowEngineError, UsageError

from .options import DB_HELP, use_database

# name -> "module:attribute"; imported only when the command runs (or its help is shown)
BUILTIN_COMMANDS: dict[str, str] = {
    "run": "flow_engine.cli.run_cmd:run",
    "list": "flow_engine.cli.list_cmd:list_flows",
    "plugins": "flow_engine.cli.plugins_cmd:plugins",
    "runs": "flow_engine.cli.history_cmd:runs",
    "show": "flow_engine.cli.history_cmd:show",
    "resume": "flow_engine.cli.durable_cmd:resume",
    "cancel": "flow_engine.cli.durable_cmd:cancel",
    "recover": "flow_engine.cli.durable_cmd:recover",
    "fork": "flow_engine.cli.fork_cmd:fork",
    "respond": "flow_engine.cli.respond_cmd:respond",
    "wait": "flow_engine.cli.wait_cmd:wait",
    "worker": "flow_engine.cli.worker_cmd:worker",
    "cache": "flow_engine.cli.cache_cmd:cache",
    "batch": "flow_engine.cli.batch_cmd:batch",
}
SHORT_HELP: dict[str, str] = {
    "run": "Run a flow and print its outputs.",
    "list": "List the registered flows and their inputs.",
    "plugins": "List plugins, their versions, what they provide and their status.",
    "runs": "List recorded runs, newest first.",
    "show": "Show one run: inputs, outputs, error and its steps.",
    "resume": "Resume a failed, crashed or cancelled run in place.",
    "cancel": "Cancel a run at its next step boundary.",
    "recover": "Mark runs whose heartbeat stopped as crashed.",
    "fork": "Fork a run from one of its steps, with changed inputs or model.",
    "respond": "Answer a run waiting for input and continue it.",
    "wait": "Wait until a run ends and print its result like `flow run`.",
    "worker": "Start a worker that executes submitted runs (Celery).",
    "cache": "Show or clear the response cache (repeated LLM calls).",
    "batch": "Run a flow once per line of a JSON Lines file, with progress.",
}


class LazyGroup(click.Group):
    """Imports a command's module only when that command is used; adds plugin commands on demand."""

    _plugin_cache: dict[str, click.Command] | None = None
    _listing_cache: dict[str, click.Command] | None = None

    def _plugin_commands(self, listing: bool = False) -> dict[str, click.Command]:
        """Commands plugins add through ``register_commands`` (the SQL plugin's ``flow db`` among them).

        To list them (``flow --help``) only the plugins whose module defines that hook are imported."""
        if self._plugin_cache is not None:
            return self._plugin_cache
        if listing and self._listing_cache is not None:
            return self._listing_cache
        from flow_engine.engine import get_engine

        group = click.Group("plugins")
        if listing:
            import warnings

            from flow_engine.plugin_manager import PluginRegistry

            engine = get_engine()
            with warnings.catch_warnings():  # a broken plugin is reported by the command that uses it
                warnings.simplefilter("ignore")
                registry = PluginRegistry(
                    only=engine._plugin_selection("plugins"),
                    disabled=engine._plugin_selection("disable_plugins"),
                    implementing="register_commands",
                )
                registry.pm.hook.register_commands(cli=group)
            self._listing_cache = dict(group.commands)
            return self._listing_cache
        registry = get_engine().plugins
        if registry.has_impls("register_commands"):
            registry.pm.hook.register_commands(cli=group)
        self._plugin_cache = dict(group.commands)
        return self._plugin_cache

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = set(BUILTIN_COMMANDS) | set(self.commands)
        try:
            names |= set(self._plugin_commands(listing=_only_listing(ctx)))
        except Exception:  # a broken plugin must not break --help
            pass
        return sorted(names)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        target = BUILTIN_COMMANDS.get(cmd_name)
        if target is None:
            try:
                return self._plugin_commands(listing=_only_listing(ctx)).get(cmd_name)
            except Exception:
                return None
        if ctx.resilient_parsing or _only_listing(ctx):
            return _Placeholder(cmd_name)
        module_name, attr = target.split(":")
        command: click.Command = getattr(importlib.import_module(module_name), attr)
        return command


def _only_listing(ctx: click.Context) -> bool:
    """True while ``flow --help`` renders the command list (no need to import every command)."""
    return bool(ctx.meta.get("flow_engine.listing"))


class _Placeholder(click.Command):
    def __init__(self, name: str):
        super().__init__(name, help=SHORT_HELP.get(name, ""), short_help=SHORT_HELP.get(name))


class CommandError(click.ClickException):
    """A flow-engine error raised by a command (the flow failed), shown as one ``Error:`` line; exit 1."""

    exit_code = 1


class CommandUsageError(CommandError):
    """A flow-engine ``UsageError`` raised by a command; exit 2."""

    exit_code = 2


class FlowGroup(LazyGroup):
    def invoke(self, ctx: click.Context) -> Any:
        """flow-engine errors become one readable message and an exit code (2 usage, 1 failure), no traceback.

        Done here rather than only in ``main()`` so click's own runner (tests, embedding) behaves the same.
        """
        try:
            return super().invoke(ctx)
        except UsageError as exc:
            raise CommandUsageError(str(exc)) from exc
        except FlowEngineError as exc:
            raise CommandError(str(exc)) from exc

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        ctx.meta["flow_engine.listing"] = True
        try:
            super().format_commands(ctx, formatter)
        finally:
            ctx.meta.pop("flow_engine.listing", None)


@click.group(cls=FlowGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", "database_url", metavar="URL", envvar="FLOW_ENGINE_DATABASE_URL", help=DB_HELP)
@click.version_option(package_name="flow-engine", prog_name="flow")
@click.pass_context
def cli(ctx: click.Context, database_url: str | None) -> None:
    """flow-engine: run typed, persisted LLM flows and look at their records."""
    from_command_line = ctx.get_parameter_source("database_url") is click.core.ParameterSource.COMMANDLINE
    use_database(database_url, given=from_command_line)
    ctx.with_resource(_warnings_as_lines())


def fail(message: str, code: int = 2) -> None:
    """Print one readable error line and exit (no traceback)."""
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def _show_warning(
    message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None
) -> None:
    """flow-engine's own warnings (a plugin failed to load...) as one ``Warning:`` line, not a source dump."""
    text = str(message)
    if text.startswith("flow-engine"):
        click.echo(f"Warning: {text}", err=True)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


_default_showwarning = warnings.showwarning


@contextlib.contextmanager
def _warnings_as_lines() -> Iterator[None]:
    """While a command runs, flow-engine's warnings (the offline-model notice...) are ``Warning:`` lines
    on stderr, however the command was invoked (``main()``, click's test runner, another program)."""
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        yield


def main(argv: list[str] | None = None) -> Any:
    warnings.showwarning = _show_warning
    try:
        return cli.main(args=argv, prog_name="flow", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.exceptions.ClickException as exc:
        exc.show()
        sys.exit(2 if isinstance(exc, click.UsageError) else exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except UsageError as exc:
        fail(str(exc), 2)
    except FlowEngineError as exc:
        fail(str(exc), 1)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
