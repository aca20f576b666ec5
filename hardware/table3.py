"""The paper's Table 3 (energy per forward pass, CIFAR-10 architecture) beside ours.

The ANN row is counted from the ANN twin of the ``cifar10`` preset. For the SNN rows
the paper gives only totals; we solve its convention for the one average firing rate
those totals imply, and price the ``cifar10`` Spiking U-Net with the rates of a
measured profile: per layer when the profile was measured on that architecture, else
the profile's MAC-weighted mean spike rate on every spike-input layer (a transfer
between architectures, said so in the output).
"""

from __future__ import annotations

import numpy as np
import torch

from sddpm.errors import SddpmError
from sddpm.hardware.energy import energy_report, first_conv_index
from sddpm.hardware.hardware_costs import HardwareCosts
from sddpm.hardware.profiler import ActivityProfiler
from sddpm.hardware.spike_profile import SpikeProfile
from sddpm.models import build_model
from sddpm.presets import get_preset

PAPER_TABLE3_MJ = {"DDPM-ANN": 29.23, "SDDPM-4T": 10.97, "SDDPM-8T": 22.96}
PAPER_PRESET = "cifar10"


def paper_model(arch: str, timesteps: int, seed: int = 0):
    """A random-init model of the paper architecture and one input ``(model, x, t)``."""
    config = get_preset(PAPER_PRESET)
    if arch == "snn":
        config = config.with_timesteps(timesteps)
    torch.manual_seed(seed)
    model = build_model(config, arch).eval()
    x = torch.randn(1, config.image_channels, config.image_size, config.image_size)
    return model, x, torch.tensor([config.diffusion_steps // 2])


@torch.no_grad()
def architecture_profile(arch: str, timesteps: int, seed: int = 0) -> SpikeProfile:
    """Layers of the paper architecture from one forward pass of a random-init model.

    Only the structure (shapes, MACs, which inputs are spikes, analog input density) is
    used; the spike rates of a random network mean nothing and are replaced.
    """
    model, x, t = paper_model(arch, timesteps, seed)
    with ActivityProfiler(model, timesteps if arch == "snn" else 1) as profiler:
        model(x, t)
    return profiler.profile({"arch": arch, "preset": PAPER_PRESET, "source": "structure"})


def mean_spike_rate(profile: SpikeProfile) -> float:
    """MAC-weighted mean input rate of the spike-input layers: ``sum SOPs / sum T*MACs``."""
    binary = np.array([l.binary_input for l in profile.layers])
    if not binary.any():
        return 0.0
    return float(profile.synaptic_ops()[:, binary].sum()
                 / (profile.dense_macs()[binary].sum() * len(profile.diffusion_t)))


def _with_rates(structure: SpikeProfile, measured: SpikeProfile) -> tuple[SpikeProfile, str]:
    """``structure`` with the measured spike rates put on its spike-input layers."""
    rates = structure.input_rate.copy()  # [1, L, T]
    binary = np.array([l.binary_input for l in structure.layers])
    same = ([(l.name, l.dense_macs) for l in measured.layers]
            == [(l.name, l.dense_macs) for l in structure.layers])
    if same and measured.timesteps == structure.timesteps:
        rates[0, binary] = measured.input_rate[:, binary].mean(axis=0)
        how = "per layer and timestep"
    else:
        rates[0, binary] = mean_spike_rate(measured)
        how = "network mean spike rate transferred to every spike-input layer"
    return SpikeProfile(layers=structure.layers, populations=structure.populations,
                        timesteps=structure.timesteps, diffusion_t=structure.diffusion_t,
                        input_rate=rates, exact_events=structure.exact_events,
                        population_rate=structure.population_rate,
                        meta={**structure.meta, "arch": "snn"}), how


def implied_rate(profile: SpikeProfile, energy_mj: float, hardware: HardwareCosts) -> float:
    """The one firing rate of every non-first layer giving ``energy_mj`` (paper convention)."""
    dense = profile.dense_macs()
    first = first_conv_index(profile)
    rest = dense.sum() - dense[first]
    return (energy_mj * 1e9 - hardware.mac_pj * dense[first]) / (hardware.ac_pj * rest)


def reproduce_table3(measured: SpikeProfile, hardware: HardwareCosts) -> dict:
    """Rows of Table 3, paper beside ours, under the paper's convention on ``hardware``."""
    if measured.arch != "snn":
        raise SddpmError("Table 3's SNN rows need the spike rates of a spiking model; "
                         f"{measured.meta.get('checkpoint', 'this profile')} is an ANN")
    ann = architecture_profile("ann", 1)
    ann_mj = energy_report(ann, hardware, "paper").per_forward_mj
    rows = [{"model": "DDPM-ANN", "timesteps": None, "paper_mJ": PAPER_TABLE3_MJ["DDPM-ANN"],
             "ours_mJ": ann_mj, "relative_difference": ann_mj / PAPER_TABLE3_MJ["DDPM-ANN"] - 1,
             "dense_macs_per_forward": float(ann.dense_macs().sum())}]
    for T in (4, 8):
        name = f"SDDPM-{T}T"
        structure = architecture_profile("snn", T)
        priced, how = _with_rates(structure, measured)
        ours = energy_report(priced, hardware, "paper").per_forward_mj
        rows.append({
            "model": name, "timesteps": T, "paper_mJ": PAPER_TABLE3_MJ[name], "ours_mJ": ours,
            "relative_difference": ours / PAPER_TABLE3_MJ[name] - 1,
            "dense_macs_per_forward": float(structure.dense_macs().sum()),
            "paper_implied_rate": implied_rate(structure, PAPER_TABLE3_MJ[name], hardware),
            "our_effective_rate": implied_rate(structure, ours, hardware),
            "our_spike_rate": mean_spike_rate(priced), "rate_mapping": how,
        })
    return {
        "hardware": hardware.name, "convention": "paper", "architecture": PAPER_PRESET,
        "rows": rows,
        "rate_source": {**measured.meta, "timesteps": measured.timesteps,
                        "mean_spike_rate": mean_spike_rate(measured)},
    }


def _at_rate(structure: SpikeProfile, rate: float) -> SpikeProfile:
    """``structure`` at the paper's reading of one rate: every layer after the first conv
    (analog-input ones too, as its convention counts them) and every population."""
    rates = structure.input_rate.copy()
    first = first_conv_index(structure)
    rates[0, [i for i in range(len(structure.layers)) if i != first]] = rate
    return SpikeProfile(layers=structure.layers, populations=structure.populations,
                        timesteps=structure.timesteps, diffusion_t=structure.diffusion_t,
                        input_rate=rates, exact_events=structure.exact_events,
                        population_rate=np.full_like(structure.population_rate, rate),
                        meta={**structure.meta, "arch": "snn"})


def _population_rates(priced: SpikeProfile, measured: SpikeProfile, how: str) -> dict:
    """Torch population -> ``[T]`` rates of the priced profile's source."""
    if how == "per layer and timestep":
        rates = measured.population_rate.mean(axis=0)
        return {p.name: rates[k] for k, p in enumerate(measured.populations)}
    rate = float(priced.input_rate[0, [l.binary_input for l in priced.layers]].mean())
    return {p.name: np.full(priced.timesteps, rate) for p in priced.populations}


def _chip_at_rates(graph, pop_rates: dict) -> SpikeProfile:
    """The chip network's profile with every population firing uniformly at its rates:
    expected counts per position, which is all the event count reads."""
    from sddpm.export.nir_file import graph_info
    from sddpm.hardware.deployed import profile_from_counts

    counts = {}
    for pop in graph_info(graph)["populations"]:
        rate = np.asarray(pop_rates[pop["torch"]], dtype=np.float64)
        counts[pop["node"]] = np.broadcast_to(rate[:, None, None, None],
                                              (len(rate), *pop["shape"])).copy()
    return profile_from_counts(graph, counts, 1, 0)


def reproduce_table3_compare(measured: SpikeProfile, *, progress=None) -> dict:
    """Table 3's SNN/ANN energy ratio under every convention.

    Two rate sources for the SNN rows: the measured profile's (as
    :func:`reproduce_table3`) and the single rate the paper's own figures imply (on
    every layer after the first conv, as the paper's convention reads it). ``neurobench``
    counts NeuroBench's way on Bernoulli spikes drawn at those rates
    (:func:`~sddpm.hardware.neurobench_count.neurobench_at_rates`); ``deployed`` prices
    the chip network exported from the architecture with its populations at the rates.
    """
    from sddpm.export.torch_to_nir import export_nir, is_host_module
    from sddpm.hardware.conventions import (
        CONVENTIONS,
        HOST_HARDWARE,
        price_counting,
        price_deployed,
        price_memory,
        price_neurobench,
    )
    from sddpm.hardware.hardware_costs import load_hardware_costs
    from sddpm.hardware.neurobench_count import neurobench_at_rates, neurobench_version

    if measured.arch != "snn":
        raise SddpmError("Table 3's SNN rows need the spike rates of a spiking model")
    say = progress or (lambda message: None)
    costs = {c: load_hardware_costs(CONVENTIONS[c].hardware) for c in CONVENTIONS}
    host = load_hardware_costs(HOST_HARDWARE)
    fp32 = costs["paper"]

    def price(profile, neurobench, chip):
        out = {c: price_counting(profile, costs[c], c).per_forward_mj
               for c in ("paper", "strict")}
        out["neurobench"] = price_neurobench(neurobench, costs["neurobench"]).per_forward_mj
        out["memory"] = price_memory(profile, costs["memory"]).per_forward_mj
        out["deployed"] = price_deployed(profile, chip, costs["deployed"], host,
                                         is_host_module).per_forward_mj
        return out

    say("ANN twin of the cifar10 preset")
    ann_profile = architecture_profile("ann", 1)
    model, x, t = paper_model("ann", 1)
    ann = price(ann_profile, neurobench_at_rates(model, x, t, {}, 1), None)
    del model
    rows = [{"model": "DDPM-ANN", "paper_mJ": PAPER_TABLE3_MJ["DDPM-ANN"],
             "energy_mJ": {"rate source": ann}}]
    graph = None
    for T in (4, 8):
        name = f"SDDPM-{T}T"
        say(f"{name}: structure, chip network, NeuroBench at the rates")
        structure = architecture_profile("snn", T)
        model, x, t = paper_model("snn", T)
        if graph is None:  # the chip network does not depend on T
            graph = export_nir(model, dtype=np.float32)
        implied = implied_rate(structure, PAPER_TABLE3_MJ[name], fp32)
        measured_rates, how = _with_rates(structure, measured)
        energy = {}
        for source, priced in (("rate source", measured_rates),
                               ("paper-implied rate", _at_rate(structure, implied))):
            spike_rates = {l.name: priced.input_rate[0, i]
                           for i, l in enumerate(priced.layers) if l.binary_input}
            pops = _population_rates(priced, measured, how if source == "rate source"
                                     else "one rate")
            energy[source] = price(priced, neurobench_at_rates(model, x, t, spike_rates, T),
                                   _chip_at_rates(graph, pops))
        del model
        rows.append({"model": name, "timesteps": T, "paper_mJ": PAPER_TABLE3_MJ[name],
                     "rate_mapping": how, "paper_implied_rate": implied, "energy_mJ": energy,
                     "snn_over_ann": {src: {c: e[c] / ann[c] for c in CONVENTIONS}
                                      for src, e in energy.items()}})
    return {"architecture": PAPER_PRESET, "conventions": list(CONVENTIONS),
            "hardware": {c: costs[c].name for c in CONVENTIONS},
            "neurobench_version": neurobench_version(),
            "paper_claim_snn_over_ann": PAPER_TABLE3_MJ["SDDPM-4T"] / PAPER_TABLE3_MJ["DDPM-ANN"],
            "rows": rows,
            "rate_source": {**measured.meta, "timesteps": measured.timesteps,
                            "mean_spike_rate": mean_spike_rate(measured)}}


def format_table3_compare(result: dict) -> str:
    conventions = result["conventions"]
    src = result["rate_source"]
    lines = [f"Table 3 re-priced ({result['architecture']} architecture, mJ per forward pass "
             f"and SNN/ANN; the paper: SDDPM-4T / DDPM-ANN = "
             f"{result['paper_claim_snn_over_ann']:.3f})",
             f"{'model':10s} {'rates':17s} " + " ".join(f"{c:>17s}" for c in conventions)]
    for row in result["rows"]:
        for source, energy in row["energy_mJ"].items():
            ratio = row.get("snn_over_ann", {}).get(source)
            label = "" if ratio is None else source
            if source == "paper-implied rate":
                label = f"implied fr {row['paper_implied_rate']:.3f}"
            lines.append(f"{row['model']:10s} {label:17s} " + " ".join(
                f"{energy[c]:9.2f} ({ratio[c]:5.3f})" if ratio else f"{energy[c]:9.2f} {'':7s}"
                for c in conventions))
    lines.append(f"rate source: {src.get('checkpoint', '?')} ({src.get('preset', '?')}, "
                 f"T={src['timesteps']}, mean spike rate {src['mean_spike_rate']:.3f}); "
                 f"{result['rows'][1]['rate_mapping']}. neurobench: NeuroBench "
                 f"{result['neurobench_version']} on Bernoulli spikes at the rates; deployed: "
                 "the exported chip network at the rates, host layers at 45nm-fp32")
    return "\n".join(lines)
