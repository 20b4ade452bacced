"""Opening an engine for a storage URL: a URL SQLAlchemy cannot read, or a SQLite file whose folder
cannot be made, is a ``ConfigurationError`` (exit 2 in the CLI) naming the URL with its password
hidden and what is wrong, never a ``ValueError`` or ``OSError`` traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from flow_engine.errors import ConfigurationError
from flow_engine.plugins.sql.connect import create_sql_engine, parse_url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "postgresql://me:hunter2@db.example:notaport/runs",
            "invalid database URL 'postgresql://me:***@db.example:notaport/runs': "
            "the port 'notaport' is not a number",
        ),
        (
            "postgresql://u@host:notaport/db",
            "invalid database URL 'postgresql://u@host:notaport/db': the port 'notaport' is not a number",
        ),
        (
            "postgresql://[::1:1/db",
            "invalid database URL 'postgresql://[::1:1/db': the IPv6 address '[::1:1' has no closing ']'",
        ),
        (
            "postgresql://me:hunter2@[::1]:x/db",
            "invalid database URL 'postgresql://me:***@[::1]:x/db': the port 'x' is not a number",
        ),
        (
            "postgresql://me:hunter2@db.example:65536/runs",
            "invalid database URL 'postgresql://me:***@db.example:65536/runs': "
            "port 65536 is not a port number",
        ),
        ("not a url", "invalid database URL 'not a url': it is not scheme://"),
    ],
)
def test_an_unreadable_url_names_itself_password_hidden_and_the_problem(url, message):
    for opening in (parse_url, create_sql_engine):
        with pytest.raises(ConfigurationError) as raised:
            opening(url)
        assert str(raised.value).startswith(message)
        assert "hunter2" not in str(raised.value)


def test_a_readable_url_with_an_ipv6_host_and_port_is_accepted():
    parsed = parse_url("postgresql://me:hunter2@[::1]:5432/runs")
    assert (parsed.drivername, parsed.host, parsed.port) == ("postgresql+psycopg", "::1", 5432)


def test_a_sqlite_file_under_a_file_is_refused_naming_it(tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    url = f"sqlite:///{tmp_path / 'afile' / 'sub' / 'runs.db'}"
    with pytest.raises(ConfigurationError) as raised:
        create_sql_engine(url)
    assert str(raised.value) == f"cannot open database {url}: {tmp_path / 'afile'} is a file, not a folder"


def test_a_sqlite_folder_that_cannot_be_created_is_refused(tmp_path, monkeypatch):
    def denied(self: Path, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", denied)
    url = f"sqlite:///{tmp_path / 'locked' / 'runs.db'}"
    with pytest.raises(ConfigurationError) as raised:
        create_sql_engine(url)
    assert str(raised.value) == (
        f"cannot open database {url}: its folder {tmp_path / 'locked'} cannot be created (Permission denied)"
    )


def test_a_sqlite_path_under_the_home_folder_opens_there_and_makes_no_folder_named_tilde(
    tmp_path, monkeypatch
):
    from sqlalchemy import text

    from flow_engine.plugins.sql.connect import sqlite_path

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    url = "sqlite:///~/data/runs.db"
    assert sqlite_path(url) == tmp_path / "home" / "data" / "runs.db"
    engine = create_sql_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (x INTEGER)"))
    finally:
        engine.dispose()
    assert (tmp_path / "home" / "data" / "runs.db").is_file()
    assert not (tmp_path / "~").exists()
