"""Atomic writes: a failed write leaves the previous file intact and no temp file behind."""

from __future__ import annotations

import json

import pytest

from effdet_plugin.atomic import atomic_open, write_json


def test_write_json_replaces_whole(tmp_path):
    path = tmp_path / "sub" / "rows.json"
    assert write_json([{"a": 1}], path, indent=2) == path
    assert json.loads(path.read_text()) == [{"a": 1}]
    assert "\n  " in path.read_text()


def test_failed_write_keeps_previous_file(tmp_path):
    path = tmp_path / "best.pt"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk full"), atomic_open(path, "wb") as f:
        f.write(b"half")
        raise RuntimeError("disk full")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["best.pt"]


def test_unserializable_json_leaves_nothing(tmp_path):
    path = tmp_path / "metrics.json"
    with pytest.raises(TypeError):
        write_json({"x": object()}, path)
    assert list(tmp_path.iterdir()) == []
