"""A spike profile of the deployed network: the chip's synaptic maps, fed by any spikes.

The torch-side profile (:mod:`sddpm.hardware.profiler`) counts the trained model's layers.
On the chip the network is the exported graph: BatchNorm folded, concatenations split,
1x1 shortcuts composed into the maps they follow, and one Lava ``Conv`` per (map,
delay-line length). This module builds the :class:`SpikeProfile` of that network from
the spikes of its populations, read from Lava or from the PyTorch reference executor;
the same energy model then prices both, so the two sides can be compared layer by
layer. The host's layers (encoding conv, time embedding, decoder) are not in it.
"""

from __future__ import annotations

from types import SimpleNamespace

import nir
import numpy as np

from sddpm.export.graph import neighbours
from sddpm.export.latency import balance
from sddpm.export.nir_file import Upsample2d
from sddpm.export.rewrites import conv_output_hw
from sddpm.hardware.energy import energy_report
from sddpm.hardware.hardware_costs import load_hardware_costs
from sddpm.hardware.profiler import real_fanout
from sddpm.hardware.spike_profile import Population, SpikeProfile, SynapticLayer


def _source_spikes(graph, preds, node, spikes) -> np.ndarray:
    """``[B, T, C, H, W]`` spikes entering a conv (upsampled when its source is)."""
    source = graph.nodes[node]
    if isinstance(source, Upsample2d):
        (pop,) = preds[node]
        s0, s1 = (int(f) for f in source.scale_factor)
        return np.asarray(spikes[pop]).repeat(s0, axis=-2).repeat(s1, axis=-1)
    return np.asarray(spikes[node])


def deployed_profile(graph: nir.NIRGraph, spikes: dict, diffusion_t: int,
                     meta: dict | None = None) -> SpikeProfile:
    """One denoising step's profile of the deployed network.

    Parameters
    ----------
    graph : nir.NIRGraph
        The export.
    spikes : dict
        IF node -> spikes ``[B, T, C, H, W]`` (numpy or torch), every population.
    diffusion_t : int
        The step's diffusion t.
    """
    spikes = {k: np.asarray(v, dtype=np.float64) for k, v in spikes.items()}
    preds, _ = neighbours(graph)
    instances = balance(graph).conv_instances()
    T = next(iter(spikes.values())).shape[1]
    layers, rates, events = [], [], []
    for conv, wait in instances:
        node = graph.nodes[conv]
        (source,) = preds[conv]
        x = _source_spikes(graph, preds, source, spikes)  # [B, T, C, H, W]
        c_out, c_in, kh, kw = node.weight.shape
        h, w = x.shape[-2:]
        stride, padding = [int(s) for s in node.stride], [int(p) for p in node.padding]
        out_h, out_w = conv_output_hw((h, w), (kh, kw), stride, padding)
        layers.append(SynapticLayer(
            name=f"{conv}+{wait}", kind="conv2d", weight_shape=tuple(node.weight.shape),
            input_shape=tuple(x.shape[2:]), output_shape=(c_out, out_h, out_w),
            dense_macs=out_h * out_w * c_out * c_in * kh * kw, per_timestep=True,
            binary_input=bool(np.all((x == 0) | (x == 1)))))
        rates.append((x != 0).mean(axis=(0, 2, 3, 4)))
        geometry = SimpleNamespace(padding_mode="zeros", padding=padding, stride=stride,
                                   kernel_size=(kh, kw), dilation=(1, 1))
        fanout = real_fanout(geometry, (h, w)).numpy()
        per_position = (x != 0).sum(axis=(1, 2)).mean(axis=0)  # per image, all T
        events.append(float((per_position * fanout).sum()) * c_out)
    populations = [Population(n, int(np.prod(graph.nodes[n].v_threshold.shape)))
                   for n in graph.nodes if isinstance(graph.nodes[n], nir.IF)]
    pop_rates = [spikes[p.name].mean(axis=(0, 2, 3, 4)) for p in populations]
    return SpikeProfile(
        layers=layers, populations=populations, timesteps=T,
        diffusion_t=np.array([diffusion_t]), input_rate=np.array([rates]),
        exact_events=np.array([events]), population_rate=np.array([pop_rates]),
        meta={"arch": "snn", "part": "chip", **(meta or {})})


class DeployedEnergy:
    """Prices one forward pass of the deployed network from its populations' spikes.

    ``DeployedEnergy()(graph, spikes, t)`` is the energy per image in mJ of the chip's
    synaptic maps (host layers excluded) on ``hardware`` under ``convention``: what
    ``sddpm simulate`` reports for Lava's spikes and for the reference's.
    """

    def __init__(self, hardware: str = "45nm-fp32", convention: str = "paper"):
        self.costs = load_hardware_costs(hardware)
        self.convention = convention
        self.description = (f"{self.costs.name}, '{convention}' convention, chip network "
                            "only")

    def __call__(self, graph: nir.NIRGraph, spikes: dict, diffusion_t: int) -> float:
        profile = deployed_profile(graph, spikes, diffusion_t)
        return energy_report(profile, self.costs, self.convention).per_forward_mj
