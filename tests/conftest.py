import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sddpm.allocator import keep_freed_memory

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

keep_freed_memory()  # as the sddpm commands do, so tests run with what users get


@pytest.fixture(autouse=True)
def _fixed_threads():
    torch.set_num_threads(2)
    yield


def run_cli(*args, timeout=300, env=None):
    """Run a console script (``sddpm``...) in a subprocess; returns CompletedProcess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([str(BIN / args[0]), *map(str, args[1:])], capture_output=True,
                          text=True, timeout=timeout, env=full_env, cwd=ROOT)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A tiny spiking model trained for a few steps (with EMA)."""
    from sddpm.train import TrainConfig, Trainer

    out = tmp_path_factory.mktemp("tiny")
    cfg = TrainConfig(preset="tiny", steps=6, ckpt_every=3, sample_every=1000, sample_n=4,
                      sample_steps=2, out=str(out), warmup=1)
    Trainer(cfg).run()
    return out / "last.pt"


@pytest.fixture(scope="session")
def lava_bundle(tiny_checkpoint, tmp_path_factory):
    """The tiny model's Lava bundle, as ``sddpm-export --to lava`` writes it (read only)."""
    folder = tmp_path_factory.mktemp("tiny-bundle") / "tiny-lava"
    done = run_cli("sddpm-export", "--to", "lava", tiny_checkpoint, "-o", folder)
    assert done.returncode == 0, done.stderr
    return folder
