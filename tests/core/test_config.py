"""Settings: where things go when nothing says otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from flow_engine.config import Settings


@pytest.mark.parametrize(
    ("database_url", "expected"),
    [
        ("sqlite:////srv/runs/flow.db", Path("/srv/runs/artifacts")),
        ("sqlite+pysqlite:////srv/runs/flow.db", Path("/srv/runs/artifacts")),
        ("sqlite:////srv/runs/flow.db?timeout=30", Path("/srv/runs/artifacts")),
        ("sqlite:///relative/flow.db", Path("relative/artifacts")),
        ("sqlite:///with%20space/flow.db", Path("with space/artifacts")),  # as SQLAlchemy decodes it
        ("sqlite:///file:/srv/runs/flow.db?uri=true&mode=rwc", Path("/srv/runs/artifacts")),
        ("sqlite:///file:///srv/runs/flow.db?uri=true", Path("/srv/runs/artifacts")),
        ("sqlite://", None),
        ("sqlite:///:memory:", None),
        ("memory://", None),
        ("postgresql+psycopg://postgres@127.0.0.1/test", None),
    ],
)
def test_artifacts_go_beside_a_sqlite_file_else_in_the_data_folder(database_url, expected, tmp_path):
    settings = Settings(database_url=database_url, data_dir=tmp_path)
    assert settings.resolved_artifacts_dir() == (expected or tmp_path / "artifacts")


def test_an_artifacts_dir_that_is_set_wins(tmp_path):
    settings = Settings(database_url="sqlite:////srv/runs/flow.db", artifacts_dir=tmp_path / "pictures")
    assert settings.resolved_artifacts_dir() == tmp_path / "pictures"
