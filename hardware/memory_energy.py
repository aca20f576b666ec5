"""The ``memory`` convention: Lemaire et al.'s analytical count, memory accesses included.

E. Lemaire et al., "An Analytical Estimation of Spiking Neural Networks Energy
Efficiency", ICONIP 2022 (arXiv 2210.13107), whose reference implementation is the
``EnergyEstimationMetric`` of the qualia-plugin-snn project. Every access to an SRAM
of ``n`` words of ``b`` bits costs ``pj_per_bit * n * b + pj_per_access`` (their fit to
Horowitz's 8 KiB / 32 KiB / 1 MiB figures); additions and multiplications cost the
hardware file's ``ac_pj`` and ``mac_pj - ac_pj``. Per image and forward pass, for a
layer with ``C_in`` input and ``C_out`` output channels, ``K`` kernel taps, ``N_in``
and ``N_out`` input and output values per timestep, ``W`` weights, ``T`` timesteps:

Formal layer (an ANN's, or an SNN layer whose input is analog), per application:
  MACs ``C_in K N_out`` (their Eq. 1.1; ``N_in N_out`` for a Linear, Eq. 2.1), bias
  additions ``N_out``; as many input reads (Eq. 3; a Linear reads its ``N_in`` inputs
  once, Eq. 4) and weight reads (Eq. 6.1f) as MACs; ``N_out`` bias reads (6.1s) and
  output writes (Eq. 11); addressing additions ``N_in + N_out + C_out K`` (a Linear:
  ``N_in N_out``). An SNN's analog-input layer runs once per timestep it is applied.
Spiking layer (every input 0 or 1), with ``theta_in`` the input spikes over all T:
  accumulates ``theta_in prod(ceil(K_d / S_d)) C_out + T N_out`` (Eq. 1.4; ``S`` the
  stride), weight reads ``theta_in C_out K`` (Eq. 7f), membrane reads and as many
  writes ``theta_in C_out K + T N_out`` (Eq. 9, 14), bias reads ``T N_out`` (7s), input
  reads ``theta_in`` (Eq. 5), addressing ``2 theta_in`` multiply-adds (Eq. 16.2) and
  ``theta_in K`` additions (the reference implementation's count; its docstring's
  Eq. 16.3 has a further factor ``C_out``).
IF population (its output spikes ``theta_out``): ``theta_out`` reset additions and
  ``theta_out`` output writes (the last terms of Eq. 1.4 and Eq. 13). IF has no leak,
  so no leak multiplications.

Memory sizes each access is priced with: inputs by the input map (``N_in`` words; the
reference prices spike reads with a FIFO whose size is a design choice of their
SPLEAT accelerator, we take the whole map), weights by ``W``, membranes and outputs by
``N_out``, biases by ``C_out``. In our network a convolution's events go into the
membrane of the population its output feeds (what the deployed chip does), so the
synaptic layer owns the membrane traffic and the population its resets and outputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sddpm.errors import SddpmError
from sddpm.hardware.hardware_costs import HardwareCosts
from sddpm.hardware.spike_profile import SpikeProfile, SynapticLayer

COMPONENTS = ("arithmetic", "weights", "membrane", "input_output", "bias", "addressing")
PJ_PER_MJ = 1e9


@dataclass
class MemoryLayerCounts:
    """Counts per image and forward pass of one row (a layer or an IF population)."""

    name: str
    kind: str  # "formal", "spiking" or "population"
    macs: float
    adds: float
    accesses: dict  # component -> [(count, memory words), ...]


def _shapes(layer: SynapticLayer) -> tuple[int, int, int, int, int]:
    """``C_in, C_out, K, N_in, N_out`` of one application (per image, per timestep)."""
    c_out, c_in = layer.weight_shape[:2]
    return (c_in, c_out, math.prod(layer.weight_shape[2:]), math.prod(layer.input_shape),
            math.prod(layer.output_shape))


def _strides(layer: SynapticLayer) -> list[int]:
    """Per spatial dimension, as recorded; a profile written before strides were kept
    has shapes only, and ``ceil(in / out)`` is the stride of a 'same'-padded kernel."""
    if layer.stride:
        return list(layer.stride)
    return [-(-i // o) for i, o in zip(layer.input_shape[1:], layer.output_shape[1:])]


def _formal(layer: SynapticLayer, applications: int) -> MemoryLayerCounts:
    c_in, c_out, k, n_in, n_out = _shapes(layer)
    bias = [(n_out, c_out)] if layer.bias else []
    if layer.kind == "linear":
        macs = n_in * n_out
        reads_in, addressing = [(n_in, n_in)], n_in * n_out
    else:
        macs = c_in * k * n_out
        reads_in, addressing = [(macs, n_in)], n_in + n_out + c_out * k
    a = applications
    return MemoryLayerCounts(
        layer.name, "formal", macs=a * macs, adds=a * (n_out if layer.bias else 0) + a * addressing,
        accesses={"weights": [(a * macs, math.prod(layer.weight_shape))],
                  "input_output": [(a * c, m) for c, m in reads_in] + [(a * n_out, n_out)],
                  "bias": [(a * c, m) for c, m in bias]})


def _spiking(layer: SynapticLayer, theta_in: float, T: int) -> MemoryLayerCounts:
    c_in, c_out, k, n_in, n_out = _shapes(layer)
    reach = math.prod(math.ceil(kd / s) for kd, s in zip(layer.weight_shape[2:],
                                                            _strides(layer)))
    membrane = theta_in * c_out * k + T * n_out
    return MemoryLayerCounts(
        layer.name, "spiking", macs=2 * theta_in,
        adds=theta_in * reach * c_out + T * n_out + theta_in * k,
        accesses={"weights": [(theta_in * c_out * k, math.prod(layer.weight_shape))],
                  "membrane": [(2 * membrane, n_out)],
                  "input_output": [(theta_in, n_in)],
                  "bias": [(T * n_out, c_out)] if layer.bias else []})


def memory_counts(profile: SpikeProfile, step: int) -> list[MemoryLayerCounts]:
    """Every row's counts in profiled forward pass ``step``: layers, then populations."""
    rows = []
    for i, layer in enumerate(profile.layers):
        # spikes arrive every timestep; a once-per-forward layer whose input happened
        # to be 0/1 (the time embedding at t = 0: sin 0, cos 0) is not a spiking layer
        if profile.arch == "snn" and layer.binary_input and layer.per_timestep:
            theta_in = float(profile.input_rate[step, i].sum()) * math.prod(layer.input_shape)
            rows.append(_spiking(layer, theta_in, profile.timesteps))
        else:
            rows.append(_formal(layer, profile.timesteps if layer.per_timestep else 1))
    for p, pop in enumerate(profile.populations):
        theta_out = float(profile.population_rate[step, p].sum()) * pop.neurons
        rows.append(MemoryLayerCounts(pop.name, "population", macs=0.0, adds=theta_out,
                                      accesses={"input_output": [(theta_out, pop.neurons)]}))
    return rows


def access_pj(words: float, costs: HardwareCosts) -> float:
    """Energy of one access to an SRAM of ``words`` words."""
    memory = costs.memory
    return memory["pj_per_bit"] * words * memory["word_bits"] + memory["pj_per_access"]


def row_energy_pj(row: MemoryLayerCounts, costs: HardwareCosts) -> dict:
    """``{component: pJ}`` of one row."""
    out = {"arithmetic": row.macs * costs.mac_pj + row.adds * costs.ac_pj}
    for component, accesses in row.accesses.items():
        out[component] = sum(count * access_pj(words, costs) for count, words in accesses)
    return {c: out.get(c, 0.0) for c in COMPONENTS}


@dataclass
class MemoryReport:
    """The memory convention's result: per row, per component, per step (mJ)."""

    hardware: str
    rows: list[str]
    row_kind: list[str]
    energy_mj: np.ndarray  # [S, R, components]
    diffusion_t: np.ndarray

    @property
    def per_step_mj(self) -> np.ndarray:
        return self.energy_mj.sum(axis=(1, 2))

    def row_mj(self) -> dict:
        """Mean per forward of each row."""
        return dict(zip(self.rows, self.energy_mj.sum(axis=2).mean(axis=0).tolist()))

    def components_mj(self) -> dict:
        return dict(zip(COMPONENTS, self.energy_mj.sum(axis=1).mean(axis=0).tolist()))


def memory_report(profile: SpikeProfile, costs: HardwareCosts) -> MemoryReport:
    """Price ``profile`` under Lemaire et al.'s counting on ``costs`` (with SRAM figures)."""
    if costs.memory is None:
        raise SddpmError(f"hardware costs {costs.name} have no SRAM figures; the memory "
                         "convention needs a cost file with a 'memory' entry, such as "
                         "45nm-int32-sram")
    counted = [memory_counts(profile, s) for s in range(len(profile.diffusion_t))]
    steps = [[[row_energy_pj(r, costs)[c] / PJ_PER_MJ for c in COMPONENTS] for r in step]
             for step in counted]
    rows = counted[0]
    return MemoryReport(hardware=costs.name, rows=[r.name for r in rows],
                        row_kind=[r.kind for r in rows], energy_mj=np.array(steps),
                        diffusion_t=np.asarray(profile.diffusion_t))
