"""Parsing the package's own source in tests, around a CPython 3.11 bug.

``ast.parse`` on Python 3.11 up to 3.11.7 (this machine's) can fail with ``SystemError: AST constructor
recursion depth mismatch`` when a garbage collection during the parse lets another thread run and
touch the ast module's shared state (python/cpython#106905, fixed in later 3.11 and 3.12 releases);
the suite runs servers, store writers and worker threads beside the test. The same source parses on a
second try.
"""

from __future__ import annotations

import ast


def parse(source: str) -> ast.Module:
    for _ in range(2):
        try:
            return ast.parse(source)
        except SystemError as exc:  # python/cpython#106905 only
            if "recursion depth mismatch" not in str(exc):
                raise
    return ast.parse(source)
