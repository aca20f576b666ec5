"""Building a noise predictor from a preset, and its static figures (parameters, MACs)."""

from __future__ import annotations

import torch
from torch import nn

from sddpm.ann_unet import AnnUNet
from sddpm.errors import SddpmError
from sddpm.neurons import check_backend
from sddpm.presets import ModelConfig, check_arch
from sddpm.snn_unet import SpikingUNet


def build_model(config: ModelConfig, arch: str, neuron: str = "snntorch") -> nn.Module:
    """The Spiking U-Net (``arch='snn'``) or its ANN twin (``'ann'``) for ``config``."""
    if check_arch(arch) == "snn":
        return SpikingUNet(config, neuron=check_backend(neuron))
    if config.block != "prespike":
        raise SddpmError(f"the {config.block} block is a spiking block; an ANN twin has one "
                         "block")
    return AnnUNet(config)


def count_params(model: nn.Module) -> int:
    """All parameters, the frozen sinusoidal table included (the papers' convention)."""
    return sum(p.numel() for p in model.parameters())


def _layer_macs(module: nn.Module, out: torch.Tensor) -> int:
    if isinstance(module, (nn.Conv2d, nn.Conv3d)):
        kernel = 1
        for k in module.kernel_size:
            kernel *= k
        return out.numel() * (module.in_channels // module.groups) * kernel
    if isinstance(module, nn.Linear):
        return out.numel() * module.in_features
    return 0


@torch.no_grad()
def count_macs(model: nn.Module, config: ModelConfig) -> dict:
    """Dense multiply-accumulates of one forward pass at batch 1, convs and linears.

    For the SNN the figure is per spiking timestep (the whole forward divided by T),
    the convention under which the paper's energy figures are stated.

    Returns
    -------
    dict
        ``macs_per_forward``, ``conv_macs``, ``linear_macs`` (all per timestep for SNN).
    """
    totals = {"conv": 0, "linear": 0}

    def hook(module, inputs, out):
        kind = "linear" if isinstance(module, nn.Linear) else "conv"
        totals[kind] += _layer_macs(module, out)

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.Conv3d, nn.Linear))
    ]
    was_training = model.training
    model.eval()
    try:
        x = torch.zeros(1, config.image_channels, config.image_size, config.image_size)
        model(x, torch.zeros(1, dtype=torch.long))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    per = config.timesteps if isinstance(model, SpikingUNet) else 1
    conv, linear = totals["conv"] / per, totals["linear"] / per
    return {"macs_per_forward": conv + linear, "conv_macs": conv, "linear_macs": linear}
