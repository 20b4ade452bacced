"""Every test of the LLM layer runs with outside network access blocked (127.0.0.1 only)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_network(no_network: None) -> None:
    pass
