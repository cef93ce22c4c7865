"""Atomic writes: the result appears whole or not at all, and no temporary file is left behind."""

import json
import stat

import pytest

from rewact_tools.atomic import NEW_FILE_MODE, write_atomically, write_json


def test_write_json_creates_folders_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "a" / "b" / "data.json"
    write_json(path, {"x": [1, 2]})
    assert json.loads(path.read_text()) == {"x": [1, 2]}
    assert [p.name for p in path.parent.iterdir()] == ["data.json"]


def test_written_files_are_shared_as_a_plain_write_would_and_keep_a_replaced_files_mode(tmp_path):
    path = tmp_path / "labels.json"
    write_json(path, {"x": 1})
    assert stat.S_IMODE(path.stat().st_mode) == NEW_FILE_MODE == 0o644  # not mkstemp's private 0o600
    path.chmod(0o640)
    write_json(path, {"x": 2})
    assert stat.S_IMODE(path.stat().st_mode) == 0o640 and json.loads(path.read_text()) == {"x": 2}


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "data.json"
    write_json(path, {"old": True})

    def broken(temporary):
        temporary.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomically(path, broken)
    assert json.loads(path.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["data.json"]
