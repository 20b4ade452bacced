"""Shared helpers of the benchmarks: medians of repeated measurements and a uniform report line."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime


def median_of(fn: Callable[[], float], repeats: int) -> float:
    return statistics.median(fn() for _ in range(repeats))


def time_command(argv: list[str], repeats: int, env: dict[str, str] | None = None) -> float:
    """Median wall time in seconds of a command (after one warm-up run)."""
    full_env = {**os.environ, **(env or {})}

    def once() -> float:
        started = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=full_env)
        return time.perf_counter() - started

    once()
    return median_of(once, repeats)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def header(title: str) -> None:
    print(f"\n## {title}\n{datetime.now(UTC):%Y-%m-%d %H:%M} UTC — {machine()}", flush=True)


def row(name: str, value: str, ratio: str = "", target: str = "") -> None:
    print(f"  {name:<58} {value:>14} {ratio:>10} {target}", flush=True)


PYTHON = sys.executable


def bootstrap_interval(
    groups: Sequence[Sequence[float]],
    statistic: Callable[..., float],
    rounds: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """The 95 % interval of ``statistic(*groups)`` by the percentile bootstrap: each group resampled with
    replacement, on its own, ``rounds`` times. Says how far a ratio measured here could move on the same
    machine and code: a target is met only if the whole interval is on its side."""
    import random

    draw = random.Random(seed)
    found = sorted(statistic(*(draw.choices(group, k=len(group)) for group in groups)) for _ in range(rounds))
    return found[int(rounds * 0.025)], found[int(rounds * 0.975) - 1]
