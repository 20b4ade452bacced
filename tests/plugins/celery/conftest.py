"""One deployment (Redis, PostgreSQL schema, fake OpenAI server, workers) per test module: starting
workers costs seconds (Celery, and litellm imported before the first run), so a module shares them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .services import Deployment, deployment


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with deployment(tmp_path_factory.mktemp("celery")) as setup:
        yield setup


@pytest.fixture(autouse=True)
def _fresh_request_log(request: pytest.FixtureRequest) -> None:
    """Each test counts only its own requests at the fake server."""
    if "cluster" in request.fixturenames:
        request.getfixturevalue("cluster").fake.reset()
