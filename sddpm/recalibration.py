"""A checkpoint's EMA weights with BatchNorm statistics of their own (:mod:`sddpm.batch_norm`).

For checkpoints written before training recalibrated its EMA, and for shipping: the
weights a sampler uses (the EMA when present, else ``model``) are rebuilt into their
network, measured anew on the training set the checkpoint names, and written back with
the record of how.
"""

from __future__ import annotations

from sddpm.batch_norm import RECALIBRATION_KEY, Recalibration, recalibrate_batch_norm
from sddpm.checkpoint import check_against_model
from sddpm.data import load_dataset
from sddpm.diffusion import GaussianDiffusion
from sddpm.errors import SddpmError
from sddpm.models import build_model
from sddpm.presets import ModelConfig


def recalibrate_checkpoint(payload: dict, path, how: Recalibration = Recalibration(), *,
                           data_dir=None) -> dict:
    """``payload`` with its sampling weights' BatchNorm statistics measured anew.

    ``path`` names the checkpoint in errors. Only running statistics change (no weight);
    the result carries :data:`~sddpm.batch_norm.RECALIBRATION_KEY`. A network without
    BatchNorm (the ANN twin) is refused: there is nothing to recalibrate.
    """
    config = ModelConfig.from_dict(payload["model_config"])
    net = build_model(config, payload["arch"], payload.get("neuron", "snntorch"))
    check_against_model(payload, net.state_dict(), path)
    section = "ema" if payload.get("ema") is not None else "model"
    net.load_state_dict(payload[section])
    data = load_dataset(config.dataset, image_size=config.image_size, data_dir=data_dir)
    record = recalibrate_batch_norm(net, GaussianDiffusion(config.diffusion_steps), data, how)
    if record is None:
        raise SddpmError(f"{path} is an {payload['arch']} without BatchNorm: its statistics "
                         "need no recalibration; use it as it is")
    return {**payload, section: net.state_dict(), RECALIBRATION_KEY: record.to_dict()}
