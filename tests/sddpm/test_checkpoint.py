import os
import pickle

import pytest
import torch

from sddpm.checkpoint import load_checkpoint, restore_rng_state, rng_state, save_checkpoint
from sddpm.errors import SddpmError


def _payload():
    return {"arch": "snn", "model_config": {"name": "tiny"}, "step": 3,
            "model": {"w": torch.arange(5.0)}, "rng": rng_state()}


def test_round_trip_and_no_temporary_files_left(tmp_path):
    path = save_checkpoint(_payload(), tmp_path / "a.pt")
    loaded = load_checkpoint(path)
    assert loaded["step"] == 3 and torch.equal(loaded["model"]["w"], torch.arange(5.0))
    assert os.listdir(tmp_path) == ["a.pt"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_rng_state_round_trips():
    import random

    import numpy as np
    state = rng_state()
    a = (torch.rand(3), np.random.rand(3), random.random())
    restore_rng_state(state)
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and (a[1] == b[1]).all() and a[2] == b[2]


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = save_checkpoint(_payload(), tmp_path / "a.pt")
    before = path.read_bytes()

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        save_checkpoint(_payload(), path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["a.pt"]


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": "sddpm-checkpoint", "payload": _Payload(str(marker))}, path)
    assert not marker.exists()
    with pytest.raises(SddpmError, match="refused"):
        load_checkpoint(path)
    assert not marker.exists()

    raw = tmp_path / "evil.pkl"
    raw.write_bytes(pickle.dumps(_Payload(str(marker))))
    with pytest.raises(SddpmError):
        load_checkpoint(raw)
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04broken"])
def test_corrupt_files_get_a_clear_error(tmp_path, content):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(SddpmError, match="corrupt|refused"):
        load_checkpoint(path)


def test_foreign_or_incomplete_files(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(SddpmError, match="not an sddpm checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    torch.save({"format": "sddpm-checkpoint", "version": 1}, tmp_path / "partial.pt")
    with pytest.raises(SddpmError, match="lacks"):
        load_checkpoint(tmp_path / "partial.pt")
    with pytest.raises(SddpmError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
