"""Benchmark: server time of the run viewer's pages (``flow ui``) with 1,000,000 runs in a SQLite store.

Two stores are filled directly (``fill_history.fill_runs``: rows generated and bulk-inserted, 3 steps
and an LLM request per step): a baseline of 1,000 runs and the big one. Each page is requested through
the ASGI app in process (Starlette's test client) several times after a warm-up; the time measured is
the server's, from the request entering the app to the last byte of the response leaving it (the
client's own overhead is not in it). The median is printed with the ratio big / baseline. Target: the
runs page and a run page under 100 ms each at 1,000,000 runs.

The totals of the runs page (``/api/runs/totals``, fetched by the page's script after it is shown)
sum over every matching run, so they grow with the history; they are printed too.

Usage::

    .venv/bin/python benchmarks/bench_ui.py [--runs 1000000] [--repeat 15] [--big PATH]

The big store is kept at PATH (default: the temp folder) and reused when it is there (filling a
million runs takes minutes).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import header, row
from benchmarks.fill_history import COMMON_FLOW, fill_runs

TARGET_MS = 100.0


def open_store(path: Path, runs: int) -> str:
    url = f"sqlite:///{path}"
    if not path.exists():
        started = time.perf_counter()
        print(f"filling {path} with {runs:,} runs ...", file=sys.stderr, flush=True)
        fill_runs(url, runs, 3, seed=0)
        print(f"  done in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return url


def pages_of(client: Any, store: Any) -> dict[str, str]:
    """The URLs to time on one store: listing pages, a run (newest, and one from the middle of the
    history) with its steps, one step's LLM call page, and the totals."""
    from flow_engine.storage import RunFilter

    total = store.run_totals(RunFilter()).runs
    newest = store.find_runs(RunFilter(), limit=1)[0]
    middle = store.find_runs(RunFilter(), limit=1, offset=total // 2)[0]
    steps = store.list_steps(middle.id)
    return {
        "runs page (newest 50)": "/runs",
        f"runs page, flow={COMMON_FLOW}": f"/runs?flow={COMMON_FLOW}",
        "runs page, status=crashed (stale heartbeats too)": "/runs?status=crashed",
        "runs page, date range (one week)": "/runs?from=2026-06-01&to=2026-06-07",
        "runs page, 3rd page": "/runs?offset=100",
        "run page (newest run)": f"/runs/{newest.id}",
        "run page (a run mid-history)": f"/runs/{middle.id}",
        "step page with its LLM call": f"/runs/{middle.id}/steps/{steps[0].id}" if steps else "",
        "JSON: /api/runs/{id}": f"/api/runs/{middle.id}",
        "run by 8-char prefix (redirect)": f"/runs/{middle.id.hex[:8]}",
        "totals, all runs": "/api/runs/totals",
        f"totals, flow={COMMON_FLOW}": f"/api/runs/totals?flow={COMMON_FLOW}",
    }


class ServerTime:
    """ASGI middleware: how long the app took for the last request, request in to response out."""

    def __init__(self, app: Any):
        self.app = app
        self.last_ms = 0.0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        started = time.perf_counter()

        async def timed_send(message: Any) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self.last_ms = (time.perf_counter() - started) * 1000

        await self.app(scope, receive, timed_send)


def measure(url: str, repeat: int) -> dict[str, float]:
    """Median milliseconds of each page on the store at ``url``."""
    from starlette.testclient import TestClient

    from flow_engine.engine import configure, reset_engine
    from flow_engine.plugins.ui.app import create_app

    engine = configure(database_url=url)
    store = engine.store
    timings: dict[str, float] = {}
    timer = ServerTime(create_app())
    with TestClient(timer, base_url="http://127.0.0.1") as client:
        for name, page in pages_of(client, store).items():
            if not page:
                continue
            first = client.get(page, follow_redirects=False)  # warm-up (and a check)
            assert first.status_code in (200, 302), (page, first.status_code, first.text[:300])
            samples = []
            for _ in range(repeat):
                client.get(page, follow_redirects=False)
                samples.append(timer.last_ms)
            timings[name] = statistics.median(samples)
    reset_engine()
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--baseline", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--big", type=Path, default=None, help="Where the big store is kept (reused).")
    args = parser.parse_args()
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    folder = Path(tempfile.gettempdir()) / "flow-ui-bench"
    folder.mkdir(exist_ok=True)
    big = args.big or folder / f"runs-{args.runs}.db"
    with tempfile.TemporaryDirectory() as scratch:
        small_url = open_store(Path(scratch) / f"runs-{args.baseline}.db", args.baseline)
        big_url = open_store(big, args.runs)
        base = measure(small_url, args.repeat)
        large = measure(big_url, args.repeat)
    what = f"{args.runs:,} runs vs {args.baseline:,}, SQLite, median of {args.repeat}"
    header(f"flow ui: server time per page ({what})")
    row("page", f"{args.runs:,} runs", "ratio", f"({args.baseline:,} runs)")
    for name, ms in large.items():
        target = ""
        if name.startswith(("runs page (newest", "run page")):
            target = "ok" if ms < TARGET_MS else f"MISSES < {TARGET_MS:.0f} ms"
        row(name, f"{ms:.1f} ms", f"{ms / base[name]:.1f}x", f"({base[name]:.1f} ms) {target}")


if __name__ == "__main__":
    main()
