"""Sampling and evaluation shared out by torchrun: two gloo processes make the images one
process makes, and measure them once."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from sddpm.shipped import CLASSIFIER, shipped_path
from tests.conftest import ROOT, run_cli

SNN = ROOT / "checkpoints" / "fmnist-small-snn.pt"
HAVE_DATA = shipped_path(CLASSIFIER).is_file() and SNN.is_file()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(*args):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           "-m", "sddpm.cli", *map(str, args)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)


# 10 images in batches of 4: three batches, two for rank 0 (4 and 2 images), one for rank 1
# (--images: torchrun's parser refuses --n as an abbreviation of its own options)
SHARED = ("--images", "10", "--batch", "4", "--sampler", "ddim", "--steps", "2", "--seed", "5")


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_DATA, reason="needs the shipped model and classifier")
def test_two_processes_sample_the_images_one_process_samples(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    single = run_cli("sddpm", "sample", SNN, *SHARED, "--out", one / "grid.png",
                     "--npz", one / "images.npz", env={"OMP_NUM_THREADS": "1"})
    assert single.returncode == 0, single.stderr
    shared = _torchrun("sample", SNN, *SHARED, "--out", two / "grid.png",
                       "--npz", two / "images.npz")
    assert shared.returncode == 0, shared.stderr[-3000:]
    a = np.load(one / "images.npz")["images"]
    b = np.load(two / "images.npz")["images"]
    assert a.shape == (10, 32, 32, 1) and np.array_equal(a, b)
    # rank 0 alone writes: one 'wrote' line per file, not one per process
    assert shared.stdout.count("wrote") == 2
    # and a different seed would have given other images (the comparison can fail)
    other = run_cli("sddpm", "sample", SNN, *SHARED[:-1], "6", "--out", tmp_path / "o.png",
                    "--npz", tmp_path / "o.npz")
    assert other.returncode == 0 and not np.array_equal(np.load(tmp_path / "o.npz")["images"], a)


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_DATA, reason="needs the shipped model and classifier")
def test_two_processes_measure_what_one_process_measures(tmp_path):
    args = (*SHARED, "--bootstrap", "20", "--json")
    # one thread in every process: another thread count sums the features in another
    # order (metrics then differ in the 8th digit, as they would in one process)
    single = run_cli("sddpm", "eval", SNN, *args, "--out", tmp_path / "one.json",
                     env={"OMP_NUM_THREADS": "1"})
    assert single.returncode == 0, single.stderr
    shared = _torchrun("eval", SNN, *args, "--out", tmp_path / "two.json")
    assert shared.returncode == 0, shared.stderr[-3000:]
    one = json.loads((tmp_path / "one.json").read_text())
    two = json.loads((tmp_path / "two.json").read_text())
    assert (one.pop("processes"), two.pop("processes")) == (1, 2)
    one.pop("seconds"), two.pop("seconds")
    assert one == two and one["images"] == 10 and one["fid_ci_low"] < one["fid"]
    # the metrics were printed once, by rank 0
    assert shared.stdout.count('"fid"') == 1
