"""Checkpoints of the official SDDPM code (github AndyCao1125/SDDPM) as sddpm checkpoints.

The official ``Spk_UNet`` and :class:`~sddpm.snn_unet.SpikingUNet` are the same network:
the same blocks in the same order, BatchNorm over ``[T*B, C, H, W]``, the analog
decoding head and its float32 weights ``0.8^(T-1-t)``. Only the names differ, so a
conversion renames and copies every tensor bit for bit (the frozen sinusoidal table
too: the file's float32 copy is the one the official model used). Two facts do not
carry over by renaming and are put into the model config instead:

- the official IF neuron (spikingjelly's ``IFNode``) fires on ``v >= threshold``, so
  the converted config says ``fires_on=">="`` and every later stage keeps that rule;
- the file does not record the spiking timesteps T, the image size or the data set:
  they are given (the paper's 4 and 32 by default) and the checkpoint says so.

The architecture (ch, ch_mult, num_res_blocks, image channels, diffusion steps) is read
from the tensors' names and shapes; then every tensor our model of that architecture
expects is checked by name, shape and dtype, and anything else in the file is refused
with the first key that does not fit, before anything is written.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from sddpm.checkpoint import FORMAT, first_line, read_tensor_file
from sddpm.data import DATASETS
from sddpm.errors import SddpmError
from sddpm.files import file_sha256, readable_file
from sddpm.models import build_model, count_params
from sddpm.neurons import spiking_layers
from sddpm.presets import ModelConfig

SOURCE = "sddpm-reference"
REFERENCE_CODE = "github.com/AndyCao1125/SDDPM, model/SpikingUNet.py, class Spk_UNet"
PAPER_TIMESTEPS = 4
PAPER_IMAGE_SIZE = 32
# our name prefix -> the official one; block-internal names (conv1, bn1, temb_proj.1,
# conv2, bn2, shortcut, conv, bn, neuron1, neuron2, neuron) are the same in both
NAME_PREFIXES = (
    ("time_embedding.table.", "time_embedding.timembedding.0."),
    ("time_embedding.mlp.0.", "time_embedding.timembedding.1."),
    ("time_embedding.mlp.2.", "time_embedding.timembedding.3."),
    ("encoder.conv1.", "conv."),
    ("encoder.bn1.", "bn."),
    ("encoder.conv2.", "conv_identity."),
    ("encoder.bn2.", "bn_identity."),
    ("down.", "downblocks."),
    ("middle.", "middleblocks."),
    ("up.", "upblocks."),
    ("decoder.bn_t.", "last_bn."),
    ("decoder.conv_t.", "T_output_layer."),
    ("decoder.bn.", "tail_bn."),
    ("decoder.conv.", "tail_conv."),
)
_TABLE = "time_embedding.timembedding.0.weight"
_STEM = "conv.weight"


def reference_name(name: str) -> str:
    """The official code's name of one of our parameters, buffers or modules."""
    if name == "encoder.neuron":
        return "neuron"
    for ours, theirs in NAME_PREFIXES:
        if name.startswith(ours):
            return theirs + name[len(ours):]
    raise SddpmError(f"{name} has no counterpart in the official SDDPM model")


@dataclass(frozen=True)
class ReferenceArchitecture:
    """What a state_dict of ``Spk_UNet`` says about the model that wrote it."""

    ch: int
    ch_mult: tuple
    num_res_blocks: int
    image_channels: int
    diffusion_steps: int

    def model_config(self, *, timesteps: int, image_size: int, dataset: str) -> ModelConfig:
        return ModelConfig(
            name=SOURCE, dataset=dataset, image_size=image_size,
            image_channels=self.image_channels, ch=self.ch, ch_mult=self.ch_mult,
            num_res_blocks=self.num_res_blocks, timesteps=timesteps,
            diffusion_steps=self.diffusion_steps, dropout=0.0, fires_on=">=",
        )


def expected_reference_tensors(config: ModelConfig) -> dict:
    """Official name -> ``(shape, dtype)`` of every tensor of ``config``'s model, in order.

    Built from our model (on the meta device: no memory), renamed; a test builds an
    official-layout file of any size from it.
    """
    with torch.device("meta"):
        model = build_model(config, "snn")
    return {reference_name(k): (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}


# -- reading the file -----------------------------------------------------------------

def _read_safetensors(path: Path) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise SddpmError(f"{path} is not a readable .safetensors file ({first_line(e)}); "
                         "pass the file as the official code or safetensors wrote it") from None


def _looks_like_safetensors(path: Path) -> bool:
    """A safetensors file opens with an 8-byte header length and then its JSON; a
    ``torch.save`` file is a zip (or, from old torch, a pickle)."""
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and not zipfile.is_zipfile(path)


def read_reference_file(path) -> tuple[dict, dict]:
    """The state_dict of an official checkpoint and what else the file said.

    Reads the official ``torch.save`` layout (``net_model``, ``optim``, ``step``,
    ``x_T``), a bare state_dict saved with ``torch.save``, or a ``.safetensors``
    state_dict; never runs pickled code (``weights_only=True``; TorchScript refused).
    """
    path = readable_file(path, "checkpoint", "give the official checkpoint file (.pt or "
                         ".safetensors), downloaded whole")
    if path.suffix == ".safetensors" or _looks_like_safetensors(path):
        return _read_safetensors(path), {"layout": "safetensors state_dict"}
    payload = read_tensor_file(
        path, "checkpoint", corrupt_hint="download the checkpoint again",
        refused_hint="an official checkpoint loads with weights_only=True, so this is another "
                     "kind of file")
    if not isinstance(payload, dict):
        raise SddpmError(f"{path} holds a {type(payload).__name__}, not a state_dict or the "
                         "official {'net_model': ...} dict")
    if payload.get("format") == FORMAT:
        raise SddpmError(f"{path} is already an sddpm checkpoint; use it as it is")
    if "net_model" in payload:
        state = payload["net_model"]
        if not isinstance(state, dict):
            raise SddpmError(f"{path}: 'net_model' holds a {type(state).__name__}, not a "
                             "state_dict")
        step = payload.get("step")
        extra = {"layout": "official torch.save dict (net_model)",
                 "ignored_keys": sorted(str(k) for k in payload
                                        if k not in ("net_model", "step"))}
        if isinstance(step, int) and not isinstance(step, bool) and step >= 0:
            extra["step"] = step  # anything else is no step count: the checkpoint says 0
        return state, extra
    return payload, {"layout": "torch.save state_dict"}


# -- the architecture from names and shapes -------------------------------------------

def _shape(state: dict, key: str, ndim: int) -> tuple:
    if key not in state:
        raise SddpmError(f"the state_dict lacks {key}, which every Spk_UNet has; this is not "
                         "a checkpoint of the official SDDPM model (or it is truncated)")
    value = state[key]
    if not isinstance(value, torch.Tensor) or value.dim() != ndim:
        got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise SddpmError(f"{key} has shape {got}, expected a {ndim}-d tensor")
    return tuple(value.shape)


def _block_indices(state: dict, group: str) -> list[int]:
    pattern = re.compile(rf"^{group}\.(\d+)\.")
    found = sorted({int(m.group(1)) for k in state if (m := pattern.match(str(k)))})
    for i, index in enumerate(found):
        if index != i:
            raise SddpmError(f"{group}.{i} is missing while {group}.{index} exists; the "
                             "state_dict is truncated or renumbered")
    return found


def infer_architecture(state: dict) -> ReferenceArchitecture:
    """ch, ch_mult, num_res_blocks, image channels and diffusion steps of a state_dict."""
    steps, ch = _shape(state, _TABLE, 2)
    stem = _shape(state, _STEM, 4)
    if stem[0] != ch:
        raise SddpmError(f"{_STEM} has {stem[0]} output channels, expected ch = {ch} "
                         f"(the width of {_TABLE})")
    levels, level = [], []
    down = _block_indices(state, "downblocks")
    if not down:
        raise SddpmError("the state_dict has no downblocks.*; this is not a checkpoint of "
                         "the official SDDPM model")
    for i in down:
        if f"downblocks.{i}.conv1.weight" in state:  # a ResBlock
            level.append(_shape(state, f"downblocks.{i}.conv1.weight", 4)[0])
        elif f"downblocks.{i}.conv.weight" in state:  # a DownSample ends the level
            if not level:
                raise SddpmError(f"downblocks.{i} is a DownSample with no ResBlock before it; "
                                 "expected num_res_blocks ResBlocks per level")
            levels.append(level)
            level = []
        else:
            key = next(str(k) for k in state if str(k).startswith(f"downblocks.{i}."))
            raise SddpmError(f"{key}: downblocks.{i} is neither a ResBlock (conv1.weight) nor a "
                             "DownSample (conv.weight)")
    if not level:
        raise SddpmError(f"downblocks.{down[-1]} is a DownSample; the last level of a U-Net "
                         "has none")
    levels.append(level)
    num_res_blocks = len(levels[0])
    mults = []
    for k, widths in enumerate(levels):
        first = sum(len(lv) + 1 for lv in levels[:k])
        if len(widths) != num_res_blocks:
            raise SddpmError(f"downblocks.{first}: level {k} has {len(widths)} ResBlocks, "
                             f"level 0 has {num_res_blocks}; expected the same number per "
                             "level")
        if len(set(widths)) != 1 or widths[0] % ch:
            raise SddpmError(f"downblocks.{first}.conv1.weight: level {k} is {widths} "
                             f"channels wide, expected one multiple of ch = {ch}")
        mults.append(widths[0] // ch)
    return ReferenceArchitecture(ch=ch, ch_mult=tuple(mults), num_res_blocks=num_res_blocks,
                                 image_channels=stem[1], diffusion_steps=steps)


def _unknown_key_hint(key: str) -> str:
    if ".attn." in key or "attention" in key.lower():
        return ("attention weights have no mapping: sddpm's Spiking U-Net has no attention "
                "(the official code defines none; it runs with attn=[])")
    if "neuron" in key:
        return ("a learnable neuron parameter: this mapping knows spikingjelly's IFNode, which "
                "has none; a ParametricLIF or other neuron is another model")
    return "the official Spk_UNet of this architecture has no such tensor"


def check_state_dict(state: dict, config: ModelConfig) -> None:
    """Every tensor of ``config``'s model present with its shape and dtype, nothing else."""
    expected = expected_reference_tensors(config)
    arch = (f"ch {config.ch}, ch_mult {list(config.ch_mult)}, num_res_blocks "
            f"{config.num_res_blocks}, {config.image_channels} image channels")
    for key in state:
        if key not in expected:
            raise SddpmError(f"unknown key {key} ({_unknown_key_hint(str(key))}); refused, "
                             "nothing written")
    for key, (shape, dtype) in expected.items():
        if key not in state:
            raise SddpmError(f"the state_dict lacks {key} (expected shape {list(shape)} for "
                             f"{arch}); it is truncated or of another configuration")
        value = state[key]
        if not isinstance(value, torch.Tensor):
            raise SddpmError(f"{key} holds a {type(value).__name__}, expected a tensor")
        if tuple(value.shape) != shape:
            raise SddpmError(f"{key} has shape {list(value.shape)}, expected {list(shape)} for "
                             f"{arch}")
        if value.dtype.is_floating_point != dtype.is_floating_point:
            raise SddpmError(f"{key} is {value.dtype}, expected a "
                             f"{'floating-point' if dtype.is_floating_point else 'integer'} "
                             "tensor")
        if value.dtype.is_floating_point and not torch.isfinite(value).all():
            raise SddpmError(f"{key} holds NaN or infinite values; the checkpoint is damaged")


# -- the conversion -------------------------------------------------------------------

def convert_reference_checkpoint(path, *, timesteps: int = PAPER_TIMESTEPS,
                                 image_size: int = PAPER_IMAGE_SIZE,
                                 dataset: str | None = None) -> dict:
    """An sddpm checkpoint payload (for :func:`sddpm.checkpoint.save_checkpoint`).

    Parameters
    ----------
    path : path
        The official checkpoint: ``torch.save`` dict with ``net_model``, bare state_dict
        (``.pt``) or ``.safetensors``.
    timesteps : int
        Spiking timesteps T the model was trained with (the file does not say).
    image_size : int
        Image side in pixels (the official ``--img_size``, 32 by default).
    dataset : str, optional
        sddpm's data set name; by default ``cifar10`` for 3 image channels and
        ``fmnist`` for 1 (what ``sddpm eval`` and ``simulate`` compare with).
    """
    if isinstance(timesteps, bool) or not isinstance(timesteps, int) or timesteps <= 0:
        raise SddpmError(f"--timesteps must be a positive integer (the spiking T the model "
                         f"was trained with, 4 in the paper), got {timesteps}")
    path = Path(path)
    state, found = read_reference_file(path)
    if not all(isinstance(k, str) for k in state):
        raise SddpmError(f"{path}: the state_dict has keys that are not names")
    architecture = infer_architecture(state)
    dataset = dataset or ("cifar10" if architecture.image_channels == 3 else "fmnist")
    if dataset not in DATASETS:
        raise SddpmError(f"--dataset {dataset!r} is not one sddpm reads; choose one of "
                         f"{', '.join(DATASETS)}")
    config = architecture.model_config(timesteps=timesteps, image_size=image_size,
                                       dataset=dataset)
    check_state_dict(state, config)
    model = build_model(config, "snn")
    ours = {name: state[reference_name(name)].clone()
            for name in model.state_dict()}
    model.load_state_dict(ours)  # strict: a last check of names and shapes
    inferred = {"ch": architecture.ch, "ch_mult": list(architecture.ch_mult),
                "num_res_blocks": architecture.num_res_blocks,
                "image_channels": architecture.image_channels,
                "diffusion_steps": architecture.diffusion_steps}
    source = {
        "from": SOURCE, "code": REFERENCE_CODE, "file": path.name,
        "sha256": file_sha256(path), **found,
        "inferred": inferred,
        "given": {"timesteps": timesteps, "image_size": image_size, "dataset": dataset},
        "firing_rule": ">= (spikingjelly IFNode: v >= v_threshold)",
        "parameters": count_params(model),
        "if_layers": len(spiking_layers(model)),
    }
    return {
        "arch": "snn", "neuron": "snntorch", "model_config": config.to_dict(),
        "train_config": {"trained_by": SOURCE},
        "step": int(found.get("step", 0)), "model": ours, "ema": None, "optimizer": None,
        "converted_from": source,
    }


def format_summary(payload: dict, out) -> str:
    """The lines ``sddpm convert`` prints."""
    src, cfg = payload["converted_from"], payload["model_config"]
    given = src["given"]
    return "\n".join([
        f"converted {src['file']} ({src['layout']}, sha256 {src['sha256'][:16]}...)"
        + (f"; not carried over: {', '.join(src['ignored_keys'])}"
           if src.get("ignored_keys") else ""),
        (f"  architecture: ch {cfg['ch']}, ch_mult {cfg['ch_mult']}, num_res_blocks "
         f"{cfg['num_res_blocks']}, {cfg['image_channels']} image channels, "
         f"{cfg['diffusion_steps']} diffusion steps (read from the tensors)"),
        f"  parameters: {src['parameters']:,}; IF layers: {src['if_layers']}",
        (f"  spiking timesteps T = {given['timesteps']}, image {given['image_size']}x"
         f"{given['image_size']}, data set {given['dataset']} (given: the file does not "
         "record them)"),
        "  firing rule: v >= threshold (kept by sample, export, simulate and energy)",
        f"wrote {out}",
    ])
