"""The official SDDPM code's checkpoint and outputs (tests/data/reference_sddpm/README.md)."""

from pathlib import Path

import numpy as np
import torch

from sddpm.checkpoint import save_checkpoint
from sddpm.reference_checkpoint import convert_reference_checkpoint

DATA = Path(__file__).resolve().parent / "data" / "reference_sddpm"
LAYOUTS = ("state_dict.safetensors", "ckpt_reference_layout.pt")


def fixture_input() -> tuple[torch.Tensor, torch.Tensor]:
    """The input the official code ran: ``x`` in float64, ``t``."""
    io = np.load(DATA / "io.npz")
    return torch.from_numpy(io["x"]).double(), torch.from_numpy(io["t"])


def make_tie_variant(state: dict) -> dict:
    """The fixture's tie variant, on our names: the stem's channel 0 is exactly 1.0, the
    threshold, at every position and step (``state`` is a state_dict, changed in place)."""
    with torch.no_grad():
        state["encoder.bn2.weight"][0] = 0.0
        state["encoder.bn2.bias"][0] = 1.0
    return state


def converted_checkpoint(path, layout: str = LAYOUTS[0], tie: bool = False) -> Path:
    """The fixture converted (as ``sddpm convert`` does) and saved at ``path``."""
    payload = convert_reference_checkpoint(DATA / layout)
    if tie:
        make_tie_variant(payload["model"])
    return save_checkpoint(payload, path)
