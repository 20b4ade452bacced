"""Take the screenshots of docs/ui.md, with the browser tests' setup (``browser.py``).

A SQLite store gets ``history.py``'s runs plus a real ``GatedFlow`` run that stays running (its last
gate is never opened) and a ``ReviewFlow`` run waiting for its review, ``flow ui`` serves it, and
Chromium photographs the pages into docs/images/::

    .venv/bin/python -m tests.plugins.ui.screenshots

Needs what the browser tests need: Playwright (the 'test' extra) and Debian's chromium.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from .browser import ROOT, launch, missing_browser, start_gated_flow, start_review, ui_server, wait_for_run
from .history import write_history

IMAGES = ROOT / "docs" / "images"
SIZE = {"width": 1200, "height": 720}


def main() -> None:
    why_not = missing_browser()
    if why_not:
        sys.exit(why_not)
    from playwright.sync_api import sync_playwright

    from flow_engine.plugins.sql.store import SqlStore

    IMAGES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        url = f"sqlite:///{folder / 'runs.db'}"
        store = SqlStore(url)
        history = write_history(store)
        store.close()
        gates = folder / "gates"
        flow = start_gated_flow(url, gates, "Write a haiku about queues", cwd=folder)
        try:
            run_id = wait_for_run(url, "ui_gated", set())
            start_review(url, folder / "markers", cwd=folder)
            review_id = wait_for_run(url, "ui_review", set())
            (gates / "go-1").touch()
            (gates / "go-2").touch()
            with ui_server(url, cwd=folder) as base, sync_playwright() as playwright:
                browser = launch(playwright)
                page = browser.new_page(base_url=base, viewport=SIZE)
                page.set_default_timeout(300_000)  # the flow process imports litellm first
                page.goto(f"/runs/{run_id}")
                page.wait_for_selector("tr[data-step='ask_model'][data-status='completed']")
                page.wait_for_selector("tr[data-step='wait_for_gate#2']")
                shots = [
                    ("ui-runs.png", "/runs", "#totals[data-runs]"),
                    ("ui-run-live.png", f"/runs/{run_id}", "#live.following"),
                    ("ui-run-failed.png", f"/runs/{history.ids['failed']}", "tr.step.failed"),
                    (
                        "ui-step.png",
                        f"/runs/{history.ids['done']}/steps/{history.steps['summarize']}",
                        "section.call",
                    ),
                    ("ui-flows.png", "/flows", "section.flow"),
                    ("ui-wait.png", f"/runs/{review_id}", "#answer-form"),
                ]
                for name, address, ready in shots:
                    page.goto(address)
                    page.wait_for_selector(ready)
                    time.sleep(0.3)
                    page.screenshot(path=str(IMAGES / name))
                    print(f"docs/images/{name}")
                browser.close()
        finally:
            flow.kill()
            flow.wait(10)


if __name__ == "__main__":
    main()
