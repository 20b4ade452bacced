"""``flow ui``: serve the run viewer with uvicorn (Starlette and uvicorn are imported only here)."""

from __future__ import annotations

import os
import sys
import threading
import webbrowser

import click

from .security import is_loopback

INSTALL_HINT = "flow ui needs the 'ui' extra: pip install 'flow-engine[ui]'"


@click.command("ui")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="Port (0: any free one)."
)
@click.option(
    "--db",
    "database_url",
    metavar="URL",
    help="Storage URL to show (default FLOW_ENGINE_DATABASE_URL, else the default SQLite file).",
)
@click.option(
    "--token",
    envvar="FLOW_ENGINE_UI_TOKEN",
    metavar="TOKEN",
    help="Require this token on every request (required when --host is not a loopback address). "
    "Env: FLOW_ENGINE_UI_TOKEN.",
)
@click.option("--read-only", is_flag=True, help="No actions: cancel and resume are turned off.")
@click.option("--open", "open_browser", is_flag=True, help="Open the viewer in a web browser.")
@click.option(
    "--poll",
    type=click.FloatRange(min=0.05),
    default=1.0,
    show_default=True,
    metavar="SECONDS",
    help="How often a live page re-reads a running run from the store.",
)
def ui(
    host: str,
    port: int,
    database_url: str | None,
    token: str | None,
    read_only: bool,
    open_browser: bool,
    poll: float,
) -> None:
    """Serve a web page showing runs, steps and LLM calls; running runs update live.

    Reads the store like `flow runs` (SQLite or PostgreSQL; runs of any process or worker) and
    offers cancel and resume with the same rules as `flow cancel` / `flow resume` (off with
    --read-only). Listens on 127.0.0.1 unless --host says otherwise; any other address needs
    --token. See docs/ui.md.
    """
    if not is_loopback(host) and not token:
        raise click.UsageError(
            f"--host {host} makes the viewer reachable from other machines; give a --token "
            "(or FLOW_ENGINE_UI_TOKEN) that every request must carry"
        )
    try:
        import uvicorn

        from .app import create_app
    except ImportError as exc:
        raise click.UsageError(f"{INSTALL_HINT} ({exc})") from None
    if database_url:
        from flow_engine.engine import reset_engine

        os.environ["FLOW_ENGINE_DATABASE_URL"] = database_url
        reset_engine()
    from flow_engine.cli.options import require_database

    require_database()  # a mistyped --db must not leave an empty database behind
    app = create_app(read_only=read_only, token=token, allowed_hosts={host}, poll_interval=poll)
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=2, lifespan="on"
    )
    server = uvicorn.Server(config)
    _announce(server, host, token, open_browser)
    server.run()


def _announce(server: object, host: str, token: str | None, open_browser: bool) -> None:
    """Print the address once the server listens (the port may have been 0), and open it if asked."""

    def wait() -> None:
        import time

        for _ in range(600):
            if getattr(server, "started", False):
                break
            time.sleep(0.05)
        else:
            return
        servers = getattr(server, "servers", [])
        port = servers[0].sockets[0].getsockname()[1] if servers and servers[0].sockets else 0
        shown = f"[{host}]" if ":" in host else host
        url = f"http://{shown}:{port}/"
        click.echo(f"flow ui: serving {url} (Ctrl+C to stop)", err=True)
        if token:  # the token itself is never printed
            click.echo(f"open {url}?token=<your token> once; the browser then keeps it in a cookie", err=True)
        sys.stderr.flush()
        if open_browser:
            webbrowser.open(f"{url}?token={token}" if token else url)

    threading.Thread(target=wait, daemon=True).start()
