"""``flow ui``: a local web page for runs, steps and LLM calls (``pip install 'flow-engine[ui]'``).

Server-rendered pages (Starlette + Jinja2) with Server-Sent Events for live updates, served by uvicorn.
It reads through the store contract only (``RunStore``), so it shows runs of any process or worker on
SQLite or PostgreSQL; its actions (cancel, resume) go through the same core functions as the CLI.

Importing this plugin imports nothing of Starlette or uvicorn (``flow --help`` loads every plugin):
the command does, when it runs.

Modules: ``command`` (the click command), ``app`` (routes), ``pages`` (what each page shows, read
from the store), ``actions`` (cancel, resume), ``security`` (token, host check, CSRF), ``live``
(Server-Sent Events), ``format`` (numbers, costs and times as people read them).
"""

from __future__ import annotations

from typing import Any

from flow_engine.plugin import hookimpl


@hookimpl
def register_commands(cli: Any) -> None:
    from .command import ui

    cli.add_command(ui)
