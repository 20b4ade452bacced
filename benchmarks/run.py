"""Run every benchmark: ``python benchmarks/run.py`` (results go into docs/performance.md by hand)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BENCHMARKS = ["bench_startup", "bench_step_overhead", "bench_storage", "bench_concurrency"]


def main(names: list[str]) -> None:
    for name in names or BENCHMARKS:
        try:
            module = importlib.import_module(f"benchmarks.{name}")
        except ModuleNotFoundError as exc:
            print(f"\n## {name}: not available ({exc})")
            continue
        module.main()


if __name__ == "__main__":
    main(sys.argv[1:])
