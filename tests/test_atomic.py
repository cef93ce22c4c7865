"""Atomic writes: the result appears whole or not at all, and no temporary file is left behind."""

import json

import pytest

from rewact_tools.atomic import write_atomically, write_json


def test_write_json_creates_folders_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "a" / "b" / "data.json"
    write_json(path, {"x": [1, 2]})
    assert json.loads(path.read_text()) == {"x": [1, 2]}
    assert [p.name for p in path.parent.iterdir()] == ["data.json"]


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
