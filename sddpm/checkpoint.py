"""Checkpoint files: written atomically, read without executing pickled code.

Format (version 1): a ``torch.save`` file whose payload is one dict of plain values
and tensors only, so that ``torch.load(weights_only=True)`` can read it:

=================  ==========================================================
``format``         ``"sddpm-checkpoint"``
``version``        ``1``
``arch``           ``"snn"`` or ``"ann"``
``neuron``         neuron backend the model was trained with
``model_config``   :class:`sddpm.presets.ModelConfig` as a dict
``train_config``   the resolved training options as a dict
``step``           completed optimizer steps
``model``          ``state_dict`` of the network (BatchNorm statistics included)
``ema``            ``state_dict`` of the EMA network, or ``None``
``optimizer``      ``state_dict`` of Adam, or ``None`` in a shipped model
``rng``            ``{"torch": ByteTensor, "numpy": {...}, "python": tuple}``
=================  ==========================================================

A file that holds anything else (a class, a function, a ``__reduce__`` payload) is
refused by the restricted unpickler before any of its code runs.
"""

from __future__ import annotations

import pickle
import random
import zipfile
from pathlib import Path

import numpy as np
import torch

from sddpm.errors import SddpmError
from sddpm.files import atomic_path
from sddpm.shipped import SNN, shipped_path

# the trained default the repository ships (checkpoints/README.md)
SHIPPED_CHECKPOINT = shipped_path(SNN)

FORMAT = "sddpm-checkpoint"
VERSION = 1
REQUIRED_KEYS = ("format", "version", "arch", "model_config", "step", "model")


def save_checkpoint(payload: dict, path: str | Path) -> Path:
    """Write ``payload`` to ``path`` atomically (temp file in the same folder, fsync, rename)."""
    payload = {"format": FORMAT, "version": VERSION, **payload}
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(payload, f)
    return Path(path)


def is_torchscript_archive(path) -> bool:
    """A TorchScript zip (it has ``constants.pkl``).

    torch < 2.6 hands such archives to ``torch.jit.load`` even under
    ``weights_only=True``, and that runs the code they carry (CVE-2025-32434), so they
    are refused before ``torch.load`` sees them.
    """
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.rsplit("/", 1)[-1] == "constants.pkl" for name in archive.namelist())


def load_tensors(path, what: str):
    """``torch.load`` of tensors and plain values only; ``what`` names the file in errors."""
    try:
        scripted = is_torchscript_archive(path)
    except (zipfile.BadZipFile, OSError):
        scripted = False  # torch.load reports what is wrong with it
    if scripted:
        raise SddpmError(f"{what} {path} is a TorchScript archive, which can run code when "
                         "loaded; refused unread. Pass a file of tensors (torch.save of a "
                         "state dict)")
    return torch.load(path, map_location="cpu", weights_only=True)


def first_line(e: BaseException) -> str:
    """An exception's first line (or its type), short enough for a one-line error."""
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:160]


def read_tensor_file(path, what: str, *, refused_hint: str, corrupt_hint: str):
    """:func:`load_tensors`, its failures as one-line errors that end in a hint."""
    try:
        return load_tensors(path, what)
    except pickle.UnpicklingError as e:
        raise SddpmError(f"{what} {path} holds objects other than tensors and plain values "
                         f"and was refused unread ({first_line(e)}); {refused_hint}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
        raise SddpmError(f"{what} {path} is corrupt, truncated or not a torch.save file "
                         f"({first_line(e)}); {corrupt_hint}") from None


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`; never runs pickled code."""
    path = Path(path)
    if not path.is_file():
        raise SddpmError(f"checkpoint {path} does not exist; give the path of a .pt file "
                         "written by 'sddpm train'")
    payload = read_tensor_file(path, "checkpoint",
                               refused_hint="only load files you trust to be sddpm checkpoints",
                               corrupt_hint="use another checkpoint or retrain")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise SddpmError(f"{path} is not an sddpm checkpoint (no format tag {FORMAT!r})")
    if payload.get("version") != VERSION:
        raise SddpmError(f"checkpoint {path} has format version {payload.get('version')}, "
                         f"this sddpm reads version {VERSION}; upgrade sddpm")
    missing = [k for k in REQUIRED_KEYS if k not in payload]
    if missing:
        raise SddpmError(f"checkpoint {path} lacks {', '.join(missing)}; it is incomplete")
    return payload


def rng_state() -> dict:
    """The generators of torch, numpy and Python, as plain values and tensors."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": random.getstate(),
    }


def restore_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
