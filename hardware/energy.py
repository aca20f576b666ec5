"""Energy of a measured profile under a hardware profile and a counting convention.

Conventions (``SOPs(l) = fr_l * T * MACs(l)``, ``fr_l`` the fraction of non-zero inputs
of layer ``l``, which for spike inputs is the firing rate):

``paper``
    SDDPM's Table 3 and the SNN literature: the first convolution (on the analog image)
    costs one MAC per dense MAC, every other layer one AC per synaptic operation, analog
    inputs included (1x1 shortcuts, time-embedding MLP, decoder):
    ``E = E_MAC * MACs(first conv) + E_AC * sum_l SOPs(l)``.
``strict``
    The first convolution and every layer whose input is not binary cost a MAC per
    dense MAC; only the other spike-input layers cost ACs; neuron updates count where
    the hardware profile has a figure. Never below ``paper``: it prices every layer
    ``paper`` prices as MACs as MACs too, a MAC costs at least an AC (hardware profiles
    refuse less), and dense MACs bound SOPs.

An ANN costs one MAC per dense MAC in every layer under both conventions. A profile of
the deployed chip network (``meta["part"] == "chip"``, :mod:`sddpm.hardware.deployed`) has no
first conv: the host computes it.
Energies are per image; "per forward" is one U-Net evaluation (one denoising step),
"per image" sums every denoising step of the profiled sampling run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from sddpm.errors import SddpmError
from sddpm.hardware.hardware_costs import HardwareCosts
from sddpm.hardware.spike_profile import SpikeProfile

CONVENTIONS = ("paper", "strict")
PJ_PER_MJ = 1e9


@dataclass
class LayerEnergy:
    """One layer's mean cost per forward pass and image (means over profiled steps)."""

    name: str
    kind: str
    input: str  # "spikes" or "analog"
    op: str  # what it is priced as: "MAC" or "AC"
    dense_macs: float
    input_rate: float
    sops: float
    exact_events: float
    energy_mj: float

    @property
    def event_gap(self) -> float:
        """Relative gap of the exact event count to the ``fr*T*MACs`` estimate."""
        return self.exact_events / self.sops - 1 if self.sops else 0.0


class PerStepEnergy:
    """Totals of a run from ``per_step_mj`` ``[S]``, the energy of each profiled forward."""

    per_step_mj: np.ndarray

    @property
    def per_forward_mj(self) -> float:
        return float(np.mean(self.per_step_mj))

    @property
    def per_image_mj(self) -> float:
        return float(np.sum(self.per_step_mj))


@dataclass
class EnergyReport(PerStepEnergy):
    hardware: str
    convention: str
    arch: str
    timesteps: int
    diffusion_t: np.ndarray  # [S]
    per_step_mj: np.ndarray  # [S] energy of each profiled forward pass
    mac_mj: float  # mean per forward, by kind of operation
    ac_mj: float
    neuron_mj: float
    layers: list[LayerEnergy]
    meta: dict

    def to_dict(self) -> dict:
        return {
            "hardware": self.hardware, "convention": self.convention, "arch": self.arch,
            "timesteps": self.timesteps,
            "energy_per_forward_mJ": self.per_forward_mj,
            "energy_per_image_mJ": self.per_image_mj,
            "denoising_steps": len(self.per_step_mj),
            "breakdown_per_forward_mJ": {"mac": self.mac_mj, "ac": self.ac_mj,
                                         "neuron": self.neuron_mj},
            "per_step": [{"t": int(t), "energy_mJ": float(e)}
                         for t, e in zip(self.diffusion_t, self.per_step_mj)],
            "layers": [{**asdict(l), "event_gap": l.event_gap} for l in self.layers],
            "profile": self.meta,
        }


def check_convention(convention: str) -> str:
    """``convention`` if it is one of :data:`CONVENTIONS`, else the one-line error."""
    if convention not in CONVENTIONS:
        raise SddpmError(f"unknown convention {convention!r}; expected one of "
                         f"{', '.join(CONVENTIONS)}")
    return convention


def first_conv_index(profile: SpikeProfile) -> int:
    for i, layer in enumerate(profile.layers):
        if layer.kind.startswith("conv"):
            return i
    raise SddpmError("the profile has no convolution; the 'paper' convention prices the "
                     "first convolution as MACs")


def _layer_ops(profile: SpikeProfile, convention: str) -> np.ndarray:
    """``[L]`` booleans: which layers are priced as MACs."""
    binary = np.array([l.binary_input for l in profile.layers])
    if profile.arch == "ann":
        return np.ones(len(binary), dtype=bool)
    is_mac = np.zeros(len(binary), dtype=bool)
    if profile.meta.get("part") != "chip":  # a chip-only profile: the first conv is the host's
        is_mac[first_conv_index(profile)] = True
    return is_mac if convention == "paper" else is_mac | ~binary


def _neuron_energy_pj(profile: SpikeProfile, hardware: HardwareCosts) -> np.ndarray:
    """``[S]`` neuron-update energy per forward and image (0 without a figure)."""
    update = hardware.neuron_update_pj
    if update is None or not profile.populations:
        return np.zeros(len(profile.diffusion_t))
    neurons = np.array([p.neurons for p in profile.populations], dtype=np.float64)
    active = (profile.population_rate * neurons[None, :, None]).sum(axis=(1, 2))
    total = neurons.sum() * profile.timesteps
    return active * update["active"] + (total - active) * update["inactive"]


def energy_report(profile: SpikeProfile, hardware: HardwareCosts,
                  convention: str = "paper") -> EnergyReport:
    """Price every layer of ``profile`` on ``hardware`` under ``convention``."""
    check_convention(convention)
    is_mac = _layer_ops(profile, convention)
    dense = profile.dense_macs()  # [L]
    sops = profile.synaptic_ops()  # [S, L]
    per_layer_pj = np.where(is_mac[None, :], dense[None, :] * hardware.mac_pj,
                            sops * hardware.ac_pj)  # [S, L]
    neuron_pj = (_neuron_energy_pj(profile, hardware) if convention == "strict"
                 else np.zeros(len(profile.diffusion_t)))
    per_step = (per_layer_pj.sum(axis=1) + neuron_pj) / PJ_PER_MJ
    mean_pj = per_layer_pj.mean(axis=0)
    layers = [
        LayerEnergy(name=l.name, kind=l.kind, input="spikes" if l.binary_input else "analog",
                    op="MAC" if is_mac[i] else "AC", dense_macs=float(dense[i]),
                    input_rate=float(profile.input_rate[:, i].mean()),
                    sops=float(sops[:, i].mean()),
                    exact_events=float(profile.exact_events[:, i].mean()),
                    energy_mj=float(mean_pj[i] / PJ_PER_MJ))
        for i, l in enumerate(profile.layers)
    ]
    return EnergyReport(
        hardware=hardware.name, convention=convention, arch=profile.arch,
        timesteps=profile.timesteps, diffusion_t=np.asarray(profile.diffusion_t),
        per_step_mj=per_step,
        mac_mj=float(mean_pj[is_mac].sum() / PJ_PER_MJ),
        ac_mj=float(mean_pj[~is_mac].sum() / PJ_PER_MJ),
        neuron_mj=float(neuron_pj.mean() / PJ_PER_MJ), layers=layers, meta=profile.meta,
    )
