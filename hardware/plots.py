"""Plots of a spike profile and its energy: per-layer bars, layer x diffusion-step heat map."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sddpm.files import save_figure
from sddpm.hardware.energy import EnergyReport
from sddpm.hardware.spike_profile import SpikeProfile


def _figure(width: float, height: float):
    # a bare Figure: no pyplot state, no backend switch under a caller's notebook
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    return fig, fig.subplots()


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path, dpi=120, bbox_inches="tight")
    return path


def plot_layer_rates(profile: SpikeProfile, path) -> Path:
    """Mean input firing rate of every spike-input layer, one bar per timestep."""
    idx = [i for i, l in enumerate(profile.layers) if l.binary_input]
    rates = profile.input_rate[:, idx].mean(axis=0)  # [L, T]
    fig, ax = _figure(max(6, 0.28 * len(idx)), 3.6)
    width = 0.8 / profile.timesteps
    for k in range(profile.timesteps):
        ax.bar(np.arange(len(idx)) + (k - (profile.timesteps - 1) / 2) * width, rates[:, k],
               width, label=f"timestep {k}")
    ax.set_xticks(np.arange(len(idx)), [profile.layers[i].name for i in idx], rotation=90,
                  fontsize=7)
    ax.set_ylabel("input firing rate")
    ax.set_title("Spike rate into each synaptic layer (mean over denoising steps)")
    ax.legend(fontsize=7, ncol=profile.timesteps)
    return _save(fig, path)


def plot_rate_heatmap(profile: SpikeProfile, path) -> Path:
    """Firing rate of every IF population (rows) at each profiled diffusion step t."""
    rates = profile.population_rate.mean(axis=2).T  # [P, S]
    fig, ax = _figure(max(5, 0.12 * rates.shape[1] + 3), max(3, 0.2 * rates.shape[0] + 1))
    image = ax.imshow(rates, aspect="auto", cmap="viridis", interpolation="nearest")
    ticks = np.unique(np.linspace(0, rates.shape[1] - 1, min(10, rates.shape[1])).astype(int))
    ax.set_xticks(ticks, [str(profile.diffusion_t[i]) for i in ticks])
    ax.set_yticks(np.arange(rates.shape[0]), [p.name for p in profile.populations], fontsize=7)
    ax.set_xlabel("diffusion step t (sampling order)")
    ax.set_title("Firing rate per IF population and diffusion step")
    fig.colorbar(image, ax=ax, label="firing rate")
    return _save(fig, path)


def plot_layer_energy(report: EnergyReport, path) -> Path:
    """Energy per forward pass of each layer, MAC- and AC-priced layers coloured apart."""
    names = [l.name for l in report.layers]
    energy = np.array([l.energy_mj for l in report.layers])
    colours = ["tab:red" if l.op == "MAC" else "tab:blue" for l in report.layers]
    fig, ax = _figure(max(6, 0.22 * len(names)), 3.6)
    ax.bar(np.arange(len(names)), energy, color=colours)
    ax.set_xticks(np.arange(len(names)), names, rotation=90, fontsize=6)
    ax.set_ylabel("mJ per forward pass")
    ax.set_title(f"Energy per layer: {report.hardware}, '{report.convention}' convention "
                 "(red MAC, blue AC)")
    return _save(fig, path)


def plot_conventions(result: dict, path) -> Path:
    """One panel per convention: SNN (and ANN) energy per image, stacked by what it is
    spent on (MAC/AC arithmetic, memory, neuron updates, chip, host)."""
    names = list(result["snn"])
    networks = [n for n in ("snn", "ann") if n in result]
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2.3 * len(names), 3.8))
    axes = fig.subplots(1, len(names))
    steps = result["denoising_steps"]
    for ax, name in zip(axes, names):
        parts = sorted({c for n in networks for c in result[n][name]["components_per_forward_mJ"]})
        bottom = np.zeros(len(networks))
        for part in parts:
            values = np.array([result[n][name]["components_per_forward_mJ"].get(part, 0.0)
                               * steps for n in networks])
            if not values.any():
                continue
            ax.bar([n.upper() for n in networks], values, bottom=bottom, label=part)
            bottom += values
        title = name
        if "snn_over_ann" in result:
            title += f"\nSNN/ANN {result['snn_over_ann'][name]:.3g}"
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=6)
    axes[0].set_ylabel(f"mJ per image ({steps} denoising steps)")
    fig.suptitle(f"Energy per image under each convention: {result['checkpoint']}", fontsize=9,
                 y=1.04)
    return _save(fig, path)
