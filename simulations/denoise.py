"""Denoising steps whose noise network runs in Lava, each checked against PyTorch.

:class:`LavaNoisePredictor` is a drop-in ``model(x_t, t)`` for the samplers of
:mod:`sddpm.diffusion`: the host computes the graph's inputs from x_t and t, Lava runs
the spiking network (the batch's images pipelined), the host decodes the stream. With a
reference (the torch model in float64), every call also records the per-population
spike agreement and the relative error of epsilon on the same x_t.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import torch

from export.executor import HostSide
from simulations.lava_runner import LavaSession
from sddpm.neurons import MultiStepIF


@dataclass
class StepComparison:
    """Lava against the torch reference at one denoising step."""

    t: int
    eps_rel_error: float
    spike_agreement: dict = field(default_factory=dict)  # population node -> fraction equal
    firing_rate: dict = field(default_factory=dict)  # population node -> Lava rate

    @property
    def worst_agreement(self) -> float:
        return min(self.spike_agreement.values(), default=1.0)


def torch_reference(model: torch.nn.Module, x: torch.Tensor, t: torch.Tensor):
    """``model``'s noise and every IF layer's spikes ``{torch path: [T*B, ...]}``."""
    spikes, hooks = {}, []
    for name, m in model.named_modules():
        if isinstance(m, MultiStepIF):
            hooks.append(m.register_forward_hook(
                lambda mod, i, o, name=name: spikes.__setitem__(name, o.detach())))
    try:
        with torch.no_grad():
            eps = model(x, t)
    finally:
        for h in hooks:
            h.remove()
    return eps, spikes


class LavaNoisePredictor:
    """``eps(x_t, t)`` computed by the spiking network on Lava.

    Parameters
    ----------
    graph : nir.NIRGraph
        The export (with its host parameters).
    session : LavaSession
        A running Lava network of that graph (with spike taps to compare spikes).
    reference : torch.nn.Module, optional
        The torch model to check every call against (run in float64).
    """

    def __init__(self, graph, session: LavaSession, reference: torch.nn.Module | None = None):
        self.host = HostSide(graph)
        self.session = session
        self.reference = None if reference is None else reference.double().eval()
        self.populations = json.loads(graph.metadata["sddpm"])["populations"]
        self.comparisons: list[StepComparison] = []

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        x64 = x.double()
        feeds = self.host.inputs(x64, t)
        per_image = [{k: v[b].numpy() for k, v in feeds.items()} for b in range(x.shape[0])]
        stream = torch.from_numpy(self.session.forward(per_image))  # [B, T, C, H, W]
        eps = self.host.decode(stream.transpose(0, 1))
        if self.reference is not None:
            self.comparisons.append(self._compare(x64, t, eps))
        return eps.to(x.dtype)

    def _compare(self, x, t, eps) -> StepComparison:
        eps_ref, spikes_ref = torch_reference(self.reference, x, t)
        T, B = self.host.config.timesteps, x.shape[0]
        step = StepComparison(t=int(t[0]), eps_rel_error=float(
            (eps - eps_ref).norm() / eps_ref.norm()))
        for pop in self.populations:
            lava = self.session.spikes.get(pop["node"])
            if lava is None:
                continue
            lo, hi = pop["channels"]
            ref = spikes_ref[pop["torch"]]
            ref = ref.reshape(T, B, *ref.shape[1:])[:, :, lo:hi].transpose(0, 1).numpy()
            step.spike_agreement[pop["node"]] = float((lava == ref).mean())
            step.firing_rate[pop["node"]] = float(lava.mean())
        return step
