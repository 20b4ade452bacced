"""Start-up cost of ``import flow_engine`` and ``flow --help`` against ``python -c pass``.

Target (issue 2): ``flow --help`` under 0.3 s. litellm must not be imported by either.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import PYTHON, header, row, time_command


def main(repeats: int = 15) -> dict[str, float]:
    header("Start-up")
    base = time_command([PYTHON, "-c", "pass"], repeats)
    imp = time_command([PYTHON, "-c", "import flow_engine"], repeats)
    public = time_command([PYTHON, "-c", "from flow_engine import BaseFlow, StructuredStep"], repeats)
    flow_bin = shutil.which("flow", path=str(Path(PYTHON).parent)) or "flow"
    help_ = time_command([flow_bin, "--help"], repeats)
    row("python -c pass (baseline)", f"{base * 1000:.0f} ms", "1.0x")
    row("python -c 'import flow_engine'", f"{imp * 1000:.0f} ms", f"{imp / base:.1f}x")
    row(
        "python -c 'from flow_engine import BaseFlow, StructuredStep'",
        f"{public * 1000:.0f} ms",
        f"{public / base:.1f}x",
    )
    row("flow --help", f"{help_ * 1000:.0f} ms", f"{help_ / base:.1f}x", "target < 300 ms")
    return {"python": base, "import": imp, "public": public, "help": help_}


if __name__ == "__main__":
    main()
