"""Run every benchmark: ``python benchmarks/run.py [NAME ...]`` (results go into docs/performance.md by hand).

``bench_history`` runs only when named (OPTIONAL). Each benchmark runs with its default options
(as ``python benchmarks/NAME.py`` with no arguments would);
one that cannot run here (a missing service or optional package) says so and the others go on.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BENCHMARKS = ["bench_startup", "bench_step_overhead", "bench_storage", "bench_concurrency", "bench_celery"]
# run only when named (`python benchmarks/run.py bench_history`): filling 1,000,000 runs takes tens of
# minutes; bench_batch runs 2 x 10,000 flows (about 6 minutes)
OPTIONAL = ["bench_history", "bench_batch"]


def main(names: list[str]) -> None:
    program = sys.argv[0]
    for name in names or BENCHMARKS:
        try:
            module = importlib.import_module(f"benchmarks.{name}")
        except ModuleNotFoundError as exc:
            print(f"\n## {name}: not available ({exc})")
            continue
        sys.argv = [f"{name}.py"]  # a benchmark parsing its own options sees none: its defaults
        try:
            module.main()
        finally:
            sys.argv[0] = program


if __name__ == "__main__":
    main(sys.argv[1:])
