"""Checkpoint files: written atomically, read without executing pickled code.

Format (version 1): a ``torch.save`` file whose payload is one dict of plain values
and tensors only, so that ``torch.load(weights_only=True)`` can read it:

====================  ==========================================================
``format``            ``"sddpm-checkpoint"``
``version``           ``1``
``arch``              ``"snn"`` or ``"ann"``
``neuron``            neuron backend the model was trained with
``model_config``      :class:`sddpm.presets.ModelConfig` as a dict
``train_config``      the resolved training options as a dict
``step``              completed optimizer steps
``model``             ``state_dict`` of the network (BatchNorm statistics included)
``ema``               ``state_dict`` of the EMA network, or ``None``
``bn_recalibration``  how the BatchNorm statistics of the sampling weights (the EMA,
                      or ``model`` in a shipped copy of one) were measured for them
                      (:mod:`sddpm.batch_norm`), or ``None``/absent; EMA weights without
                      it carry the raw model's statistics (files before the fix)
``optimizer``         ``state_dict`` of Adam, or ``None`` in a shipped model
``rng``               ``{"torch": ByteTensor, "numpy": {...}, "python": tuple}``
``tensors_sha256``    SHA-256 of every tensor of ``model`` and ``ema`` (names, dtypes,
                      shapes, bytes); checked on load. Files written before it have
                      none and load with the check reported ``absent``.
====================  ==========================================================

Reading checks, in this order: the path (missing, a folder, unreadable, empty), the
container (a zip of tensors; pickled objects refused for safety, damaged bytes said
to be damaged), the schema (format, version, keys and their types), the tensors (all
finite; beyond ``PLAUSIBLE_MAGNITUDE`` only where no checksum can speak), the
checksum. The model config and the tensors' names and shapes are checked by whoever
builds the network (:func:`check_tensors`).

A file that holds anything else (a class, a function, a ``__reduce__`` payload) is
refused by the restricted unpickler before any of its code runs.
"""

from __future__ import annotations

import hashlib
import pickle
import random
import struct
import zipfile
from pathlib import Path

import numpy as np
import torch

from sddpm.errors import SddpmError
from sddpm.files import atomic_path, readable_file
from sddpm.shipped import SNN, shipped_path

# the trained default the repository ships (checkpoints/README.md)
SHIPPED_CHECKPOINT = shipped_path(SNN)

FORMAT = "sddpm-checkpoint"
VERSION = 1
REQUIRED_KEYS = ("format", "version", "arch", "model_config", "step", "model")
TENSOR_SECTIONS = ("model", "ema")
# no trained weight or BatchNorm statistic comes near this; overwritten garbage does
PLAUSIBLE_MAGNITUDE = 1e8
_NOT_SAVED = ("integrity", "tensors_sha256")


def tensors_sha256(payload: dict) -> str:
    """SHA-256 over the tensors of ``model`` and ``ema``: name, dtype, shape and bytes."""
    digest = hashlib.sha256()
    for section in TENSOR_SECTIONS:
        state = payload.get(section)
        for name in sorted(state or {}):
            tensor = state[name].detach().cpu().contiguous()
            digest.update(f"{section}/{name}/{tensor.dtype}/{list(tensor.shape)}".encode())
            digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes()
                          if tensor.numel() else b"")
    return digest.hexdigest()


def save_checkpoint(payload: dict, path: str | Path) -> Path:
    """Write ``payload`` to ``path`` atomically (temp file in the same folder, fsync, rename)."""
    payload = {k: v for k, v in payload.items() if k not in _NOT_SAVED}
    payload = {"format": FORMAT, "version": VERSION, **payload,
               "tensors_sha256": tensors_sha256(payload)}
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


# what the weights-only unpickler says when it meets an object it will not build, as
# against bytes that are no pickle of tensors at all
_REFUSED_FOR_SAFETY = ("Unsupported class", "Unsupported global", "unrecognized function",
                       "Trying to call reduce", "not an allowed global")


def read_tensor_file(path, what: str, *, refused_hint: str, corrupt_hint: str):
    """:func:`load_tensors`, its failures as one-line errors that end in a hint.

    An object the safe unpickler will not build (a class, a function: what an attack
    carries) is *refused for safety*; bytes that are no pickle of tensors are *damaged*.
    Neither runs any code.
    """
    try:
        return load_tensors(path, what)
    except pickle.UnpicklingError as e:
        detail = str(e).split("WeightsUnpickler error:")[-1].strip() or first_line(e)
        if any(marker in str(e) for marker in _REFUSED_FOR_SAFETY):
            raise SddpmError(f"{what} {path} holds objects other than tensors and plain values "
                             f"({detail[:120]}) and was refused for safety, unread; "
                             f"{refused_hint}") from None
        raise SddpmError(f"{what} {path} is damaged or not a torch.save file of tensors (the "
                         f"safe reader stopped at: {detail[:120]}; nothing of it ran); "
                         f"{corrupt_hint}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, IndexError,
            KeyError, TypeError, AttributeError, struct.error, MemoryError, OverflowError) as e:
        raise SddpmError(f"{what} {path} is damaged, truncated or not a torch.save file "
                         f"({type(e).__name__}: {first_line(e)}); {corrupt_hint}") from None


def _check_schema(payload, path) -> None:
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise SddpmError(f"{path} is not an sddpm checkpoint (no format tag {FORMAT!r})")
    if payload.get("version") != VERSION:
        raise SddpmError(f"checkpoint {path} has format version {payload.get('version')}, "
                         f"this sddpm reads version {VERSION}; upgrade sddpm")
    missing = [k for k in REQUIRED_KEYS if k not in payload]
    if missing:
        raise SddpmError(f"checkpoint {path} lacks {', '.join(missing)}; it is incomplete")
    problems = []
    if not isinstance(payload["arch"], str):
        problems.append(f"arch is a {type(payload['arch']).__name__}, expected a name")
    if not isinstance(payload["model_config"], dict):
        problems.append(f"model_config is a {type(payload['model_config']).__name__}, "
                        "expected a dict")
    step = payload["step"]
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        problems.append(f"step is {step!r}, expected a count of optimizer steps (>= 0)")
    for section in TENSOR_SECTIONS:
        state = payload.get(section)
        if section == "ema" and state is None:
            continue
        if not isinstance(state, dict):
            problems.append(f"{section} is a {type(state).__name__}, expected a dict of "
                            "tensors (a state_dict)")
        elif not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                     for k, v in state.items()):
            bad = next(k for k, v in state.items()
                       if not (isinstance(k, str) and isinstance(v, torch.Tensor)))
            problems.append(f"{section}[{bad!r}] is not a named tensor")
    for key in ("optimizer", "train_config"):
        if payload.get(key) is not None and not isinstance(payload[key], dict):
            problems.append(f"{key} is a {type(payload[key]).__name__}, expected a dict")
    if problems:
        raise SddpmError(f"checkpoint {path} is damaged: {problems[0]}")


def _check_values(payload, path) -> None:
    checked = isinstance(payload.get("tensors_sha256"), str)
    for section in TENSOR_SECTIONS:
        for name, tensor in (payload.get(section) or {}).items():
            if not tensor.is_floating_point() or not tensor.numel():
                continue
            if not torch.isfinite(tensor).all():
                raise SddpmError(f"checkpoint {path} is damaged: {section} tensor {name} holds "
                                 "NaN or infinite values (not finite)")
            largest = float(tensor.abs().max())
            if not checked and largest > PLAUSIBLE_MAGNITUDE:
                raise SddpmError(f"checkpoint {path} is damaged: {section} tensor {name} "
                                 f"reaches {largest:.3g}, beyond any trained weight "
                                 f"({PLAUSIBLE_MAGNITUDE:.0e}); this file has no checksum "
                                 "to tell more")


def load_checkpoint(path: str | Path, *, verify: bool = True) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`; never runs pickled code.

    The payload comes back with ``integrity`` set to ``"verified"`` (its checksum
    matched) or ``"absent"`` (written before checksums: only the value checks ran).
    ``verify=False`` leaves the checksum to :func:`verify_checkpoint`, for a caller that
    first checks the tensors' names and shapes (a message that names the tensor).
    """
    path = readable_file(path, "checkpoint", "give the path of a .pt file written by "
                         "'sddpm train' or 'sddpm convert'")
    payload = read_tensor_file(path, "checkpoint",
                               refused_hint="only load files you trust to be sddpm checkpoints",
                               corrupt_hint="use another checkpoint or retrain")
    _check_schema(payload, path)
    _check_values(payload, path)
    payload["integrity"] = "unchecked"
    return verify_checkpoint(payload, path) if verify else payload


def verify_checkpoint(payload: dict, path) -> dict:
    """The checksum check of :func:`load_checkpoint`; sets ``payload['integrity']``."""
    recorded = payload.get("tensors_sha256")
    if recorded is None:
        payload["integrity"] = "absent"
    elif recorded != tensors_sha256(payload):
        raise SddpmError(f"checkpoint {path} is damaged: its tensors do not match the checksum "
                         "written with them; use another copy or retrain")
    else:
        payload["integrity"] = "verified"
    return payload


def check_against_model(payload: dict, expected: dict, path, what: str = "checkpoint") -> dict:
    """Every tensor section of ``payload`` against ``expected`` (the model's state_dict),
    then the checksum: what a caller of ``load_checkpoint(verify=False)`` owes."""
    for section in TENSOR_SECTIONS:
        if payload.get(section) is not None:
            check_tensors(payload[section], expected, f"{what} {path} ({section})")
    return verify_checkpoint(payload, path)


def check_tensors(state: dict, expected: dict, what: str) -> None:
    """``state`` has exactly the names of ``expected`` (name -> tensor or shape), each with
    that shape and a floating or integer dtype like it; else one line naming the first
    tensor that does not fit, what was expected and what was found."""
    for name, want in expected.items():
        shape = tuple(want.shape) if isinstance(want, torch.Tensor) else tuple(want)
        if name not in state:
            raise SddpmError(f"{what} lacks tensor {name} (expected shape {list(shape)}); it "
                             "is damaged or of another model")
        found = state[name]
        if tuple(found.shape) != shape:
            raise SddpmError(f"{what}: tensor {name} has shape {list(found.shape)}, expected "
                             f"{list(shape)} for its model config; it is damaged or of "
                             "another model")
        if isinstance(want, torch.Tensor) and (want.is_floating_point()
                                               != found.is_floating_point()):
            raise SddpmError(f"{what}: tensor {name} is {found.dtype}, expected "
                             f"{want.dtype}")
    extra = [name for name in state if name not in expected]
    if extra:
        raise SddpmError(f"{what} has a tensor its model does not: {extra[0]}; it is damaged "
                         "or of another model")


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
