"""Run import-linter (``.importlinter``) over the package as it is installed.

The source tree maps several folders into ``flow_engine`` (``core/`` is ``flow_engine``, ``plugins/``
is ``flow_engine.plugins``, ...), which import-linter cannot follow: it reads one folder per package.
This assembles that layout in a temporary folder (copies of the ``.py`` files) and checks it there.
Usage: ``python tools/lint_imports.py [lint-imports options]``; the exit code is lint-imports'.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# where each package of the distribution lives (pyproject.toml, [tool.setuptools.package-dir])
LAYOUT = {
    "flow_engine": "core",
    "flow_engine/plugins": "plugins",
    "flow_engine/builtin_prompts": "prompts",
    "flow_engine/examples": "examples/flows",
}


def assemble(target: Path) -> None:
    for package, folder in LAYOUT.items():
        shutil.copytree(
            ROOT / folder,
            target / package,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
            dirs_exist_ok=True,
        )


def main(argv: list[str]) -> int:
    lint = Path(sys.executable).with_name("lint-imports")
    with tempfile.TemporaryDirectory(prefix="flow-engine-imports-") as tmp:
        assemble(Path(tmp))
        env = {**os.environ, "PYTHONPATH": tmp, "PYTHONDONTWRITEBYTECODE": "1"}
        command = [str(lint), str(ROOT / ".importlinter"), "--no-cache", *argv]
        return subprocess.run(command, cwd=tmp, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
