"""Denoising steps whose noise network runs in Lava, each checked against PyTorch.

:class:`LavaNoisePredictor` is a drop-in ``model(x_t, t)`` for the samplers of
:mod:`sddpm.diffusion`: the host computes the graph's inputs from x_t and t, Lava runs
the spiking network (the batch's images pipelined), the host decodes the stream. With a
reference (the torch model in float64), every call also records the per-population
spike agreement and the relative error of epsilon on the same x_t, and, when given a
``chip_energy`` pricer (:class:`sddpm.hardware.deployed.DeployedEnergy`, passed down by
the command line: simulations know nothing of pricing), the energy of both sides' spikes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from sddpm.export.executor import ExportedNoisePredictor, HostSide
from sddpm.export.nir_file import graph_info
from sddpm.neurons import MultiStepIF
from sddpm.simulations.lava_runner import LavaSession


@dataclass
class StepComparison:
    """Lava against the torch reference at one denoising step."""

    t: int
    eps_rel_error: float
    spike_agreement: dict = field(default_factory=dict)  # population node -> fraction equal
    firing_rate: dict = field(default_factory=dict)  # population node -> Lava rate
    mismatches: dict = field(default_factory=dict)  # population node -> differing entries
    reference_spikes: dict = field(default_factory=dict)  # population node -> spike count
    energy_lava_mj: float = float("nan")  # chip energy per image, spikes read from Lava
    energy_reference_mj: float = float("nan")  # the same from the reference's spikes
    #: in fixed point: output stream entries whose integers differ (None: not compared)
    stream_mismatches: int | None = None

    @property
    def worst_agreement(self) -> float:
        return min(self.spike_agreement.values(), default=1.0)

    @property
    def mismatch_per_spike(self) -> float:
        """Differing spike entries over all populations, per reference spike."""
        return sum(self.mismatches.values()) / max(sum(self.reference_spikes.values()), 1)


class ModelReference:
    """The trained torch model in float64: ``(x, t) -> (eps, {node: [B, T, ...]})``."""

    def __init__(self, model: torch.nn.Module, populations: list[dict]):
        self.model = model.double().eval()
        self.populations = populations

    def __call__(self, x: torch.Tensor, t: torch.Tensor):
        spikes, hooks = {}, []
        for name, m in self.model.named_modules():
            if isinstance(m, MultiStepIF):
                hooks.append(m.register_forward_hook(
                    lambda mod, i, o, name=name: spikes.__setitem__(name, o.detach())))
        try:
            with torch.no_grad():
                eps = self.model(x.double(), t)
        finally:
            for h in hooks:
                h.remove()
        T, B = self.model.config.timesteps, x.shape[0]
        by_node = {}
        for pop in self.populations:
            lo, hi = pop["channels"]
            s = spikes[pop["torch"]]
            by_node[pop["node"]] = s.reshape(T, B, *s.shape[1:])[:, :, lo:hi].transpose(0, 1)
        return eps, by_node


class GraphReference:
    """The exported graph run by the PyTorch reference executor (needs no checkpoint)."""

    def __init__(self, graph):
        self.network = ExportedNoisePredictor(graph)

    def __call__(self, x: torch.Tensor, t: torch.Tensor):
        eps, spikes = self.network(x.double(), t)
        return eps, {k: v.transpose(0, 1) for k, v in spikes.items()}


class FixedPointReference:
    """The fixed-point deployment in the PyTorch emulation (lava-dl SLAYER neurons)."""

    def __init__(self, graph, fixed):
        from sddpm.simulations.fixed_emulator import FixedPointNoisePredictor

        self.network = FixedPointNoisePredictor(graph, fixed)

    def __call__(self, x: torch.Tensor, t: torch.Tensor):
        eps, spikes, stream = self.network.run(x.double(), t)
        #: the integer output stream of the last call, ``[B, T, C, H, W]``
        self.last_stream = stream.transpose(0, 1).numpy()
        return eps, {k: v.transpose(0, 1).double() for k, v in spikes.items()}


class LavaNoisePredictor:
    """``eps(x_t, t)`` computed by the spiking network on Lava.

    Parameters
    ----------
    graph : nir.NIRGraph
        The export (with its host parameters).
    session : LavaSession
        A running Lava network of that graph (with spike taps to compare spikes).
    reference : callable, optional
        ``(x, t) -> (eps, {node: spikes [B, T, ...]})`` to check every call against:
        :class:`ModelReference` (the trained torch model) or :class:`GraphReference`
        in floating point, :class:`FixedPointReference` in fixed point.
    float_reference : callable, optional
        For a fixed-point session: the float model as well, in
        :attr:`float_comparisons` (what quantisation changes).
    chip_energy : callable, optional
        ``(graph, {node: spikes [B, T, ...]}, t) -> mJ per image`` of the deployed
        network; called on Lava's spikes and on the reference's at every comparison.
    """

    def __init__(self, graph, session: LavaSession, reference=None, float_reference=None,
                 chip_energy=None, record: bool = False):
        self.host = HostSide(graph)
        self.graph = graph
        self.record = record
        #: with ``record``: every call's ``(x, t, eps, {node: spikes}, integer stream)``
        #: (spikes as bool; the stream None in floating point), to compare with a
        #: reference built after the Lava run (:meth:`compare_recorded`)
        self.records: list = []
        self.session = session
        self.reference = reference
        self.float_reference = float_reference
        self.chip_energy = chip_energy
        self.populations = graph_info(graph)["populations"]
        self.comparisons: list[StepComparison] = []
        self.float_comparisons: list[StepComparison] = []

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        x64 = x.double()
        feeds = self.host.inputs(x64, t)
        per_image = [{k: v[b].numpy() for k, v in feeds.items()} for b in range(x.shape[0])]
        stream = torch.from_numpy(self.session.forward(per_image))  # [B, T, C, H, W]
        eps = self.host.decode(stream.transpose(0, 1))
        if self.record:
            self.records.append((x64, t, eps, {k: v.astype(bool)
                                              for k, v in self.session.spikes.items()},
                                 self.session.integer_stream))
        if self.reference is not None:
            self.comparisons.append(self._compare(self.reference, x64, t, eps))
        if self.float_reference is not None:
            self.float_comparisons.append(self._compare(self.float_reference, x64, t, eps))
        return eps.to(x.dtype)

    def compare_recorded(self, reference, float_reference=None, progress: bool = False) -> None:
        """Fill :attr:`comparisons` (and :attr:`float_comparisons`) from :attr:`records`."""
        from tqdm import tqdm

        for x, t, eps, spikes, stream in tqdm(self.records, desc="comparing with the "
                                              "reference", disable=not progress):
            self.comparisons.append(self._compare(reference, x, t, eps, spikes, stream))
            if float_reference is not None:
                self.float_comparisons.append(
                    self._compare(float_reference, x, t, eps, spikes))

    def _compare(self, reference, x, t, eps, lava_spikes=None,
                 lava_stream=None) -> StepComparison:
        lava_spikes = self.session.spikes if lava_spikes is None else lava_spikes
        eps_ref, spikes_ref = reference(x, t)
        step = StepComparison(t=int(t[0]), eps_rel_error=float(
            (eps - eps_ref).norm() / eps_ref.norm()))
        reference_stream = getattr(reference, "last_stream", None)
        if lava_stream is not None and reference_stream is not None:
            step.stream_mismatches = int((lava_stream != reference_stream).sum())
        for pop in self.populations:
            lava = lava_spikes.get(pop["node"])
            if lava is None:
                continue
            ref = spikes_ref[pop["node"]].numpy()
            step.spike_agreement[pop["node"]] = float((lava == ref).mean())
            step.firing_rate[pop["node"]] = float(lava.mean())
            # agreement is dominated by silent neurons; these say how many spikes moved
            step.mismatches[pop["node"]] = int((lava != ref).sum())
            step.reference_spikes[pop["node"]] = int(ref.sum())
        if self.chip_energy is not None and len(lava_spikes) == len(self.populations):
            as_float = {k: np.asarray(v, dtype=np.float64) for k, v in lava_spikes.items()}
            step.energy_lava_mj, step.energy_reference_mj = (
                self.chip_energy(self.graph, spikes, step.t)
                for spikes in (as_float, spikes_ref))
        return step


class HandOver:
    """A sampler's model: the first ``first`` calls to ``before``, the rest to ``after``.

    ``after`` is built by ``build_after()`` on its first call, once ``before`` has been
    dropped: the Lava run of the last K steps of a schedule forks from a parent that no
    longer holds the model that computed the first ones.
    """

    def __init__(self, first: int, before, build_after):
        self.first, self.before, self.build_after = first, before, build_after
        self.after = None
        self.calls = 0

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls <= self.first:
            return self.before(x, t)
        if self.after is None:
            self.before = None
            self.after = self.build_after()
        return self.after(x, t)
