"""Generating images from a trained checkpoint, and saving them as grids and arrays."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sddpm.batch_norm import stale_batch_norm
from sddpm.checkpoint import check_against_model, load_checkpoint
from sddpm.diffusion import GaussianDiffusion, sample
from sddpm.distributed import gather_batches, my_batches, rank
from sddpm.errors import SddpmError
from sddpm.files import atomic_path
from sddpm.models import build_model
from sddpm.neurons import set_backend, set_threshold
from sddpm.presets import ModelConfig


def model_from_checkpoint(path, *, use_ema: bool = True, neuron: str | None = None,
                          threshold: float | dict | None = None) -> tuple[nn.Module, dict]:
    """The network of a checkpoint in eval mode (EMA weights when present) and its payload.

    ``threshold``: one threshold for every IF population, or a map of population patterns
    to thresholds (:func:`sddpm.neurons.thresholds_by_population`).
    """
    payload = load_checkpoint(path, verify=False)
    config = ModelConfig.from_dict(payload["model_config"])
    model = build_model(config, payload["arch"], payload.get("neuron", "snntorch"))
    check_against_model(payload, model.state_dict(), path)
    ema = use_ema and payload.get("ema") is not None
    model.load_state_dict(payload["ema"] if ema else payload["model"])
    if (ema or payload.get("shipped_from_ema")) and stale_batch_norm(payload, model):
        warnings.warn(f"{path} holds EMA weights with the raw model's BatchNorm statistics "
                      "(written before sddpm measured them for the EMA): samples and exports "
                      f"are degraded; run `sddpm recalibrate {path} -o NEW.pt` and use that",
                      stacklevel=2)
    if neuron is not None and payload["arch"] == "snn":
        set_backend(model, neuron)
    if threshold is not None:
        if payload["arch"] != "snn":
            raise SddpmError("--threshold applies to spiking models only; this is an ANN")
        set_threshold(model, threshold)
    return model.eval(), payload


def sample_images(model: Callable, diffusion: GaussianDiffusion, config: ModelConfig, *,
                  n: int, sampler: str = "ddpm", steps: int | None = None, eta: float = 0.0,
                  seed: int = 0, device="cpu", batch: int = 64,
                  progress: bool = True, shard: bool = False) -> torch.Tensor:
    """``n`` images ``[n, C, H, W]`` in [-1, 1], generated in batches of ``batch``.

    Batch ``i`` uses seed ``seed + i``, so a result depends on ``seed`` and ``batch`` only.
    ``shard``: every process of a ``torchrun`` group calls this, makes its share of the
    batches and receives all of them (:mod:`sddpm.distributed`), with the same result.
    """
    if n <= 0:
        raise SddpmError(f"number of images must be positive, got {n}")
    # any ``(x_t, t) -> eps`` callable samples; a module is put in eval mode meanwhile
    was_training = getattr(model, "training", False)
    if isinstance(model, nn.Module):
        model.eval()
    starts = range(0, n, batch)
    chunks = []
    try:
        for i in (my_batches(len(starts)) if shard else range(len(starts))):
            shape = (min(batch, n - starts[i]), config.image_channels, config.image_size,
                     config.image_size)
            chunks.append(sample(model, diffusion, shape, sampler=sampler, steps=steps,
                                 eta=eta, seed=seed + i, device=device,
                                 progress=progress and (not shard or rank() == 0)).cpu())
    finally:
        if isinstance(model, nn.Module):
            model.train(was_training)
    fullest = (min(batch, n), config.image_channels, config.image_size, config.image_size)
    return torch.cat(gather_batches(chunks, len(starts), fullest, device) if shard else chunks)


def sample_checkpoint(path, *, n: int, sampler: str = "ddim", steps: int | None = 50,
                      eta: float = 0.0, seed: int = 0, batch: int = 64, device="cpu",
                      use_ema: bool = True, neuron: str | None = None,
                      threshold: float | None = None, progress: bool = True,
                      shard: bool = False) -> tuple[torch.Tensor, nn.Module, dict]:
    """``n`` images from a checkpoint's model; returns them with the model and payload."""
    model, payload = model_from_checkpoint(path, use_ema=use_ema, neuron=neuron,
                                           threshold=threshold)
    config = ModelConfig.from_dict(payload["model_config"])
    model.to(device)
    diffusion = GaussianDiffusion(config.diffusion_steps).to(device)
    images = sample_images(model, diffusion, config, n=n, sampler=sampler, steps=steps,
                           eta=eta, seed=seed, device=device, batch=batch, progress=progress,
                           shard=shard)
    return images, model, payload


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """``[-1, 1]`` float ``[n, C, H, W]`` -> uint8 ``[n, H, W, C]``."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None) -> Path:
    """Save ``[n, C, H, W]`` images in [-1, 1] as one PNG grid."""
    from PIL import Image

    arr = to_uint8(images)
    n, h, w, c = arr.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    grid = np.zeros((rows * (h + 2) + 2, nrow * (w + 2) + 2, c), dtype=np.uint8)
    for i in range(n):
        r, k = divmod(i, nrow)
        grid[2 + r * (h + 2):2 + r * (h + 2) + h, 2 + k * (w + 2):2 + k * (w + 2) + w] = arr[i]
    path = Path(path)
    image = Image.fromarray(grid[..., 0] if c == 1 else grid)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # atomic_path makes the folder
        image.save(f, format=Image.registered_extensions()[path.suffix.lower()])
    return path
