"""The one atomic write, the one file digest, the one cache."""

import hashlib
import os
import stat

import numpy as np
import pytest

from sddpm.files import atomic_path, cached_array, file_sha256, write_json


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "out" / "report.json"
    write_json(path, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text('{"a": 2, "trunc')
            raise RuntimeError("killed mid-write")
    assert path.read_text() == '{\n  "a": 1\n}\n'
    assert sorted(p.name for p in path.parent.iterdir()) == ["report.json"]


def test_a_written_file_has_a_normal_files_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "r.json", [])
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == 0o644  # not mkstemp's 0600


def test_file_sha256_reads_large_files_in_blocks(tmp_path):
    data = os.urandom(3 * (1 << 20) + 17)  # several blocks and a partial one
    (tmp_path / "f").write_bytes(data)
    assert file_sha256(tmp_path / "f") == hashlib.sha256(data).hexdigest()


def test_the_cache_recomputes_what_is_damaged_or_of_another_shape(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    calls = []

    def compute():
        calls.append(1)
        return np.arange(6.0).reshape(2, 3)

    assert cached_array("x.npy", compute, shape=(2, 3)).shape == (2, 3)
    assert cached_array("x.npy", compute, shape=(2, 3)).sum() == 15 and len(calls) == 1
    (tmp_path / "sddpm" / "x.npy").write_bytes(b"garbage")
    cached_array("x.npy", compute, shape=(2, 3))
    assert len(calls) == 2
    cached_array("x.npy", compute, shape=(3, 2))  # a cache of another size is not used
    assert len(calls) == 3
