"""What an exported graph holds: populations, neurons, synapses, edges, host-side MACs."""

from __future__ import annotations

import nir
import numpy as np
import torch
from torch import nn

from sddpm.export.nir_file import Upsample2d
from sddpm.export.rewrites import conv_output_hw


def graph_summary(graph: nir.NIRGraph) -> dict:
    """Counts over the chip graph; synapses are conv weights times output positions."""
    pops = [n for n in graph.nodes.values() if isinstance(n, nir.IF)]
    convs = [n for n in graph.nodes.values() if isinstance(n, nir.Conv2d)]
    shapes = {}
    for name, node in graph.nodes.items():
        if isinstance(node, nir.Conv2d):
            h, w = conv_output_hw(node.input_shape, node.weight.shape[2:], node.stride,
                                  node.padding)
            shapes[name] = h * w
    return {
        "nodes": len(graph.nodes),
        "edges": len(graph.edges),
        "populations": len(pops),
        "neurons": int(sum(np.prod(p.v_threshold.shape) for p in pops)),
        "synaptic_maps": len(convs),
        "weights": int(sum(c.weight.size for c in convs)),
        # a zero weight is no synapse (the standard block's unit maps are mostly zeros)
        "synapses_per_timestep": int(sum(shapes[n] * np.count_nonzero(graph.nodes[n].weight)
                                         for n in shapes)),
        "inputs": sorted(graph.inputs),
        "outputs": sorted(graph.outputs),
        "extension_nodes": sum(isinstance(n, Upsample2d) for n in graph.nodes.values()),
    }


@torch.no_grad()
def host_macs(model: nn.Module, time_embedding: bool = True) -> int:
    """Dense MACs the host computes per forward pass at batch 1 (image repeats over T).

    ``time_embedding=False`` for a graph exported for one diffusion step, where the MLP
    and the projections are folded into biases and the host no longer runs them.
    """
    config = model.config
    host = [model.encoder.conv1, model.decoder.conv, model.decoder.conv_t]
    if time_embedding:
        host += [m for m in model.time_embedding.modules() if isinstance(m, nn.Linear)]
        host += [m for name, m in model.named_modules()
                 if ".temb_proj." in f"{name}." and isinstance(m, nn.Linear)]
    total = {"macs": 0}

    def hook(module, inputs, out):
        fan_in = (module.in_features if isinstance(module, nn.Linear) else
                  module.in_channels // module.groups * int(np.prod(module.kernel_size)))
        macs = out.numel() * fan_in
        # the encoding conv sees the image repeated over T: the host computes it once
        total["macs"] += macs // config.timesteps if module is model.encoder.conv1 else macs

    handles = [m.register_forward_hook(hook) for m in host]
    try:
        x = torch.zeros(1, config.image_channels, config.image_size, config.image_size,
                        dtype=next(model.parameters()).dtype)
        model(x, torch.zeros(1, dtype=torch.long))
    finally:
        for h in handles:
            h.remove()
    return total["macs"]
