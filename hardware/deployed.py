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

from sddpm.errors import SddpmError
from sddpm.export.graph import neighbours
from sddpm.export.latency import balance
from sddpm.export.nir_file import Upsample2d
from sddpm.export.rewrites import conv_output_hw
from sddpm.hardware.energy import energy_report
from sddpm.hardware.hardware_costs import load_hardware_costs
from sddpm.hardware.profiler import real_fanout
from sddpm.hardware.spike_profile import Population, SpikeProfile, SynapticLayer


def _source_counts(graph, preds, node, counts) -> np.ndarray:
    """``[T, C, H, W]`` spike counts entering a conv (upsampled when its source is)."""
    source = graph.nodes[node]
    if isinstance(source, Upsample2d):
        (pop,) = preds[node]
        s0, s1 = (int(f) for f in source.scale_factor)
        return counts[pop].repeat(s0, axis=-2).repeat(s1, axis=-1)
    return counts[node]


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
    for name, x in spikes.items():
        if not np.all((x == 0) | (x == 1)):
            raise SddpmError(f"population {name} holds values other than 0 and 1; the "
                             "deployed network's populations send spikes")
    batch = next(iter(spikes.values())).shape[0]
    return profile_from_counts(graph, {k: v.sum(axis=0) for k, v in spikes.items()}, batch,
                               diffusion_t, meta)


def profile_from_counts(graph: nir.NIRGraph, counts: dict, batch: int, diffusion_t: int,
                        meta: dict | None = None) -> SpikeProfile:
    """:func:`deployed_profile` from spike counts ``[T, C, H, W]`` summed over ``batch`` images.

    Counts are all a chip's synaptic events need: every spike a position sends in any
    timestep meets the same weights, so events are per-position sums times the fan-out.
    """
    preds, _ = neighbours(graph)
    T = next(iter(counts.values())).shape[0]
    layers, rates, events = [], [], []
    for conv, wait in balance(graph).conv_instances():
        node = graph.nodes[conv]
        (source,) = preds[conv]
        x = _source_counts(graph, preds, source, counts)  # [T, C, H, W]
        c_out, c_in, kh, kw = node.weight.shape
        h, w = x.shape[-2:]
        stride, padding = [int(s) for s in node.stride], [int(p) for p in node.padding]
        out_h, out_w = conv_output_hw((h, w), (kh, kw), stride, padding)
        layers.append(SynapticLayer(
            name=f"{conv}+{wait}", kind="conv2d", weight_shape=tuple(node.weight.shape),
            input_shape=tuple(x.shape[1:]), output_shape=(c_out, out_h, out_w),
            dense_macs=out_h * out_w * c_out * c_in * kh * kw, per_timestep=True,
            binary_input=True, stride=tuple(stride)))
        rates.append(x.sum(axis=(1, 2, 3)) / (batch * x[0].size))
        geometry = SimpleNamespace(padding_mode="zeros", padding=padding, stride=stride,
                                   kernel_size=(kh, kw), dilation=(1, 1))
        if (kh, kw) == (1, 1) and stride == [1, 1] and padding == [0, 0]:
            # a 1x1 map: a spike of channel ci meets the non-zero weights of its column
            # only (the standard block's unit synapses: one; a dense map: all c_out)
            per_channel = x.sum(axis=(0, 2, 3)) / batch
            targets = np.count_nonzero(node.weight[:, :, 0, 0], axis=0)
            events.append(float((per_channel * targets).sum()))
        else:
            fanout = real_fanout(geometry, (h, w)).numpy()
            per_position = x.sum(axis=(0, 1)) / batch  # per image, all T and channels
            events.append(float((per_position * fanout).sum()) * c_out)
    populations = [Population(n, int(np.prod(graph.nodes[n].v_threshold.shape)))
                   for n in graph.nodes if isinstance(graph.nodes[n], nir.IF)]
    pop_rates = [counts[p.name].sum(axis=(1, 2, 3)) / (batch * p.neurons) for p in populations]
    return SpikeProfile(
        layers=layers, populations=populations, timesteps=T,
        diffusion_t=np.array([diffusion_t]), input_rate=np.array([rates]),
        exact_events=np.array([events]), population_rate=np.array([pop_rates]),
        meta={"arch": "snn", "part": "chip", **(meta or {})})


def join_steps(steps: list[SpikeProfile], meta: dict | None = None) -> SpikeProfile:
    """One profile of several denoising steps of the same network, in order."""
    first = steps[0]
    return SpikeProfile(
        layers=first.layers, populations=first.populations, timesteps=first.timesteps,
        diffusion_t=np.concatenate([p.diffusion_t for p in steps]),
        input_rate=np.concatenate([p.input_rate for p in steps]),
        exact_events=np.concatenate([p.exact_events for p in steps]),
        population_rate=np.concatenate([p.population_rate for p in steps]),
        meta={**first.meta, **(meta or {})})


class ChipSpikeRecorder:
    """Context manager: the deployed network's profile from the torch model's own spikes.

    The export maps every IF population of the model onto one graph population per
    channel slice (``populations`` in the graph's metadata), and the chip's spikes equal
    the model's (the export's spike-exact tests), so the chip network's activity in a
    torch sampling run needs no second run: each forward pass's population spikes are
    summed over the batch and priced on the exported graph.
    """

    def __init__(self, model, graph: nir.NIRGraph):
        from sddpm.export.nir_file import graph_info

        self.model, self.graph = model, graph
        self.slices: dict[str, list[tuple[str, int, int]]] = {}
        for pop in graph_info(graph)["populations"]:
            c0, c1 = pop["channels"]
            self.slices.setdefault(pop["torch"], []).append((pop["node"], c0, c1))
        self.T = graph_info(graph)["timesteps"]
        self.steps: list[SpikeProfile] = []
        self._counts: dict = {}
        self._batch, self._t = 0, 0
        self._handles = []

    def __enter__(self):
        modules = dict(self.model.named_modules())
        missing = sorted(set(self.slices) - set(modules))
        if missing:
            raise SddpmError(f"the graph's populations {', '.join(missing)} are not in the "
                             "model; export the checkpoint being profiled")
        self._handles = [self.model.register_forward_pre_hook(self._start),
                         self.model.register_forward_hook(self._end)]
        for path, parts in self.slices.items():
            self._handles.append(modules[path].register_forward_hook(self._hook(parts)))
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()

    def _start(self, module, inputs):
        self._batch, self._t = inputs[0].shape[0], int(inputs[1].flatten()[0])
        self._counts = {}

    def _hook(self, parts):
        def hook(module, inputs, spikes):
            s = spikes.detach().reshape(self.T, self._batch, *spikes.shape[1:]).sum(dim=1)
            for node, c0, c1 in parts:
                self._counts[node] = s[:, c0:c1].double().cpu().numpy()
        return hook

    def _end(self, module, inputs, out):
        self.steps.append(profile_from_counts(self.graph, self._counts, self._batch, self._t))

    def profile(self, meta: dict | None = None) -> SpikeProfile:
        if not self.steps:
            raise SddpmError("no chip activity recorded: the model was never called")
        return join_steps(self.steps, meta)


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
