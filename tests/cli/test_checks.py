"""``flow_engine.cli.checks``: the file a command writes at its end, checked up front (the commands'
own tests check the exit codes and that nothing ran)."""

from __future__ import annotations

from pathlib import Path

import pytest

from flow_engine.cli.checks import check_output_file
from flow_engine.errors import UsageError


def test_a_file_in_a_folder_that_takes_files_is_accepted_and_nothing_is_left_there(tmp_path: Path):
    assert check_output_file(str(tmp_path / "out.jsonl"), "--output") == tmp_path / "out.jsonl"
    (tmp_path / "old.jsonl").write_text("x", encoding="utf-8")
    assert check_output_file(str(tmp_path / "old.jsonl"), "--output") == tmp_path / "old.jsonl"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.jsonl"]  # the probe is gone


def test_folders_yet_to_be_made_are_accepted_only_where_the_command_makes_them(tmp_path: Path):
    deep = str(tmp_path / "a" / "b" / "run.json")
    assert check_output_file(deep, "--record", makes_folders=True) == Path(deep)
    assert not (tmp_path / "a").exists()
    with pytest.raises(UsageError, match=r"--output .*run.json: no folder .*b; create it first"):
        check_output_file(deep, "--output")


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("", "--output: give a file name"),
        ("{tmp}", "--output {tmp}: is a folder, not a file; name the file to write"),
        ("{tmp}/file.txt/x", "--output {tmp}/file.txt/x: {tmp}/file.txt is not a folder"),
        ("/dev/null", "--output /dev/null: is not a regular file"),
    ],
)
def test_what_takes_no_file_is_named(tmp_path: Path, given: str, message: str):
    (tmp_path / "file.txt").write_text("x", encoding="utf-8")
    with pytest.raises(UsageError) as info:
        check_output_file(given.format(tmp=tmp_path), "--output", makes_folders=True)
    assert str(info.value) == message.format(tmp=tmp_path)
