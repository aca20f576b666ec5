"""Every accepted way of counting an SNN's energy, as data: a rule, a source, a pricer.

A reader of an energy claim asks which convention it used; the answer is one of the
rows of :data:`CONVENTIONS`, and ``sddpm energy --compare`` prices one sampling run
under all of them. Each pricer returns a :class:`Priced`: energy per row (layer,
population or chip map) and per profiled forward pass, so per image is the sum over
the sampling run's steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sddpm.hardware.energy import PJ_PER_MJ, PerStepEnergy, energy_report
from sddpm.hardware.hardware_costs import HardwareCosts
from sddpm.hardware.memory_energy import memory_report
from sddpm.hardware.neurobench_count import NeuroBenchCount
from sddpm.hardware.spike_profile import SpikeProfile


@dataclass(frozen=True)
class Convention:
    name: str
    rule: str
    source: str
    hardware: str  # the cost file it prices with by default
    ann: str  # how the ANN twin is priced under it


CONVENTIONS = {c.name: c for c in (
    Convention(
        "paper",
        "first conv MACs at E_MAC; every other layer's fr*T*MACs synaptic operations at "
        "E_AC, analog-input layers (1x1 shortcuts, time embedding, decoder) included",
        "SDDPM (Cao et al.) Table 3 and the SNN energy literature; Horowitz ISSCC 2014 "
        "45 nm fp32 (4.6 / 0.9 pJ)", "45nm-fp32", "dense MACs at E_MAC"),
    Convention(
        "strict",
        "the first conv and every layer whose input is not binary at E_MAC per dense MAC; "
        "only spike-input layers' fr*T*MACs at E_AC",
        "the paper's rule with its analog-input layers corrected; 45 nm fp32",
        "45nm-fp32", "dense MACs at E_MAC"),
    Convention(
        "neurobench",
        "NeuroBench's SynapticOperations, run by NeuroBench's own code on the model: a "
        "layer is AC when all its inputs are 0/1/-1, else MAC; non-zero inputs times the "
        "non-zero weights they meet (no padding taps), bias excluded; priced at E_MAC / "
        "E_AC", "NeuroBench (Yik et al., Nature Communications 2025), PyPI neurobench",
        "45nm-fp32", "NeuroBench's effective MACs at E_MAC"),
    Convention(
        "memory",
        "Lemaire et al.'s analytical count: arithmetic plus every weight, membrane, bias "
        "and input/output SRAM access, each priced by the size of its memory",
        "E. Lemaire et al., ICONIP 2022 (arXiv 2210.13107), reference implementation "
        "qualia-plugin-snn", "45nm-int32-sram", "the formal-network count of the same paper"),
    Convention(
        "deployed",
        "the exported chip network's exact synaptic events (1x1 shortcuts composed, "
        "BatchNorm folded, no padding taps) and its neuron updates, priced per event on a "
        "chip; the host's layers (encoding conv, time embedding, decoder) at E_MAC",
        "Loihi 1 (Davies et al., IEEE Micro 2018): 23.6 pJ per synaptic op, 52 / 81 pJ per "
        "inactive / active neuron update; no per-event Loihi 2 figure is published",
        "loihi1", "dense MACs on the host at E_MAC (45nm-fp32): an ANN does not map onto "
        "a spiking chip"),
)}
HOST_HARDWARE = "45nm-fp32"


@dataclass
class Priced(PerStepEnergy):
    """One convention's energy of one sampling run (mJ)."""

    convention: str
    hardware: str
    per_step_mj: np.ndarray  # [S]
    rows: dict  # row name -> mean mJ per forward
    components: dict  # what the energy is spent on, mean mJ per forward
    counts: dict = field(default_factory=dict)  # row name -> what was counted

    def to_dict(self) -> dict:
        return {"convention": self.convention, "hardware": self.hardware,
                "energy_per_forward_mJ": self.per_forward_mj,
                "energy_per_image_mJ": self.per_image_mj,
                "components_per_forward_mJ": self.components,
                "rows_per_forward_mJ": self.rows, "counts": self.counts}


def price_counting(profile: SpikeProfile, costs: HardwareCosts, convention: str) -> Priced:
    """``paper`` or ``strict``: :func:`sddpm.hardware.energy.energy_report`."""
    report = energy_report(profile, costs, convention)
    rows = {l.name: l.energy_mj for l in report.layers}
    if report.neuron_mj:
        rows["neuron updates"] = report.neuron_mj
    return Priced(convention, costs.name, report.per_step_mj, rows,
                  {"MAC": report.mac_mj, "AC": report.ac_mj, "neuron updates": report.neuron_mj},
                  {l.name: {"op": l.op, "operations": l.dense_macs if l.op == "MAC" else l.sops}
                   for l in report.layers})


def price_neurobench(count: NeuroBenchCount, costs: HardwareCosts) -> Priced:
    """NeuroBench's effective operations, MAC layers at ``mac_pj``, AC layers at ``ac_pj``."""
    is_mac = np.array([k == "MAC" for k in count.kind])
    pj = np.where(is_mac[None, :], count.effective * costs.mac_pj,
                  count.effective * costs.ac_pj)  # [S, L]
    mean = pj.mean(axis=0) / PJ_PER_MJ
    return Priced("neurobench", costs.name, pj.sum(axis=1) / PJ_PER_MJ,
                  dict(zip(count.layers, mean.tolist())),
                  {"MAC": float(mean[is_mac].sum()), "AC": float(mean[~is_mac].sum())},
                  {name: {"op": kind, "operations": float(ops), "dense": float(dense)}
                   for name, kind, ops, dense in zip(count.layers, count.kind,
                                                     count.effective.mean(axis=0),
                                                     count.dense.mean(axis=0))})


def price_memory(profile: SpikeProfile, costs: HardwareCosts) -> Priced:
    report = memory_report(profile, costs)
    return Priced("memory", costs.name, report.per_step_mj, report.row_mj(),
                  report.components_mj(),
                  {r: {"kind": k} for r, k in zip(report.rows, report.row_kind)})


def _host_macs_pj(profile: SpikeProfile, host: HardwareCosts, host_rows) -> np.ndarray:
    """``[S, L]`` pJ of the given layers as dense MACs on the host, 0 elsewhere."""
    dense = profile.dense_macs()
    on_host = np.array([host_rows(l.name) for l in profile.layers])
    return np.broadcast_to(np.where(on_host, dense * host.mac_pj, 0.0),
                           (len(profile.diffusion_t), len(dense)))


def price_deployed(torch_profile: SpikeProfile, chip: SpikeProfile | None,
                   chip_costs: HardwareCosts, host: HardwareCosts, host_rows) -> Priced:
    """The chip network's exact events and neuron updates on ``chip_costs``, the host's
    layers (``host_rows(name)``) as MACs on ``host``; an ANN (``chip`` None): all host."""
    host_pj = _host_macs_pj(torch_profile, host, host_rows if chip is not None
                            else (lambda name: True))
    rows = {l.name: float(v) / PJ_PER_MJ for l, v in zip(torch_profile.layers,
                                                         host_pj.mean(axis=0)) if v}
    host_step = host_pj.sum(axis=1)
    if chip is None:
        return Priced("deployed", host.name, host_step / PJ_PER_MJ, rows,
                      {"host MACs": float(host_step.mean() / PJ_PER_MJ)})
    events_pj = chip.exact_events * chip_costs.ac_pj  # [S, maps]
    neuron_pj = np.zeros(len(chip.diffusion_t))
    update = chip_costs.neuron_update_pj
    if update is not None:
        neurons = np.array([p.neurons for p in chip.populations], dtype=np.float64)
        active = (chip.population_rate * neurons[None, :, None]).sum(axis=(1, 2))
        neuron_pj = (active * update["active"]
                     + (neurons.sum() * chip.timesteps - active) * update["inactive"])
    rows.update({f"chip {l.name}": float(v) / PJ_PER_MJ
                 for l, v in zip(chip.layers, events_pj.mean(axis=0))})
    rows["chip neuron updates"] = float(neuron_pj.mean() / PJ_PER_MJ)
    per_step = (host_step + events_pj.sum(axis=1) + neuron_pj) / PJ_PER_MJ
    return Priced("deployed", f"{chip_costs.name} + host {host.name}", per_step, rows,
                  {"chip synaptic events": float(events_pj.sum(axis=1).mean() / PJ_PER_MJ),
                   "chip neuron updates": float(neuron_pj.mean() / PJ_PER_MJ),
                   "host MACs": float(host_step.mean() / PJ_PER_MJ)},
                  {f"chip {l.name}": {"op": "synaptic event", "operations": float(e)}
                   for l, e in zip(chip.layers, chip.exact_events.mean(axis=0))})
