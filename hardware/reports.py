"""What an energy run leaves behind: files (JSON, CSV, HDF5, plots) and printed tables.

Pure formatting and writing of :class:`~sddpm.hardware.energy.EnergyReport` and Table 3
results; the numbers are computed in :mod:`sddpm.hardware.energy` and
:mod:`sddpm.hardware.table3`.
"""

from __future__ import annotations

import csv
from pathlib import Path

from sddpm.files import atomic_path, write_json
from sddpm.hardware.energy import CONVENTIONS, energy_report
from sddpm.hardware.hardware_costs import load_hardware_costs
from sddpm.hardware.spike_profile import SpikeProfile


def energy_per_image(path, *, sampler: str = "ddim", steps: int | None = 50, n: int = 4,
                     seed: int = 0, hardware: str = "45nm-fp32", threshold=None) -> dict:
    """mJ per generated image under each convention, from ``n`` profiled images, and the
    network calls per image the sampler made (a second-order solver's extra calls
    counted from the run, not assumed), and for a spiking model its MAC-weighted mean
    spike rate (the rate behind the energy)."""
    from sddpm.hardware.profiler import profile_checkpoint

    costs = load_hardware_costs(hardware)
    profile = profile_checkpoint(path, sampler=sampler, steps=steps, n=n, seed=seed,
                                 threshold=threshold, progress=False)
    out = {f"energy_{c}_mJ_per_image": energy_report(profile, costs, c).per_image_mj
           for c in CONVENTIONS}
    out["network_calls"] = len(profile.diffusion_t)
    if profile.arch == "snn":
        from sddpm.hardware.table3 import mean_spike_rate

        out["mean_spike_rate"] = mean_spike_rate(profile)
    return out


def write_layer_csv(report, path) -> Path:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["layer", "kind", "input", "priced_as", "dense_macs", "input_rate",
                     "sops_estimate", "exact_events", "event_gap", "energy_mJ"])
        for l in report.layers:
            w.writerow([l.name, l.kind, l.input, l.op, int(l.dense_macs), f"{l.input_rate:.6g}",
                        f"{l.sops:.6g}", f"{l.exact_events:.6g}", f"{l.event_gap:.6g}",
                        f"{l.energy_mj:.6g}"])
    return Path(path)


def write_outputs(out, profile: SpikeProfile, report) -> list[Path]:
    """Profile (HDF5, CSV), energy (JSON, CSV) and plots, all into folder ``out``."""
    from sddpm.hardware import plots  # matplotlib: only when plots are written

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    energy_json = write_json(out / "energy.json", report.to_dict())
    written = [profile.save_h5(out / "profile.h5"), profile.save_csv(out / "profile.csv"),
               energy_json, write_layer_csv(report, out / "energy_layers.csv"),
               plots.plot_layer_energy(report, out / "energy_by_layer.png")]
    if profile.populations:
        written += [plots.plot_layer_rates(profile, out / "rates_by_layer.png"),
                    plots.plot_rate_heatmap(profile, out / "rates_heatmap.png")]
    return written


def format_report(report) -> str:
    d = report.to_dict()
    lines = [
        f"{report.arch.upper()} T={report.timesteps}, hardware {report.hardware}, "
        f"'{report.convention}' convention, {d['denoising_steps']} denoising steps "
        f"({report.meta.get('sampler', '?')}, {report.meta.get('images', '?')} images profiled)",
        f"{'layer':32s} {'input':6s} {'op':3s} {'dense MACs':>12s} {'rate':>6s} "
        f"{'SOPs':>12s} {'exact/est':>9s} {'mJ':>9s}",
    ]
    for l in report.layers:
        lines.append(f"{l.name:32s} {l.input:6s} {l.op:3s} {l.dense_macs:12.4g} "
                     f"{l.input_rate:6.3f} {l.sops:12.4g} {l.event_gap:+9.2%} {l.energy_mj:9.4g}")
    lines += [
        f"per forward pass: {report.per_forward_mj:.4f} mJ (MAC {report.mac_mj:.4f}, "
        f"AC {report.ac_mj:.4f}, neuron updates {report.neuron_mj:.4f})",
        f"per generated image ({d['denoising_steps']} steps): {report.per_image_mj:.3f} mJ",
    ]
    return "\n".join(lines)


def format_table3(result: dict) -> str:
    src = result["rate_source"]
    mapping = "; ".join(sorted({r["rate_mapping"] for r in result["rows"] if "rate_mapping" in r}))
    lines = [f"Table 3 of the paper beside ours ({result['architecture']} architecture, "
             f"{result['hardware']}, '{result['convention']}' convention, per forward pass)",
             f"{'model':10s} {'paper mJ':>9s} {'ours mJ':>9s} {'diff':>8s} "
             f"{'paper fr':>9s} {'our fr':>7s}"]
    for r in result["rows"]:
        implied = f"{r['paper_implied_rate']:9.3f}" if "paper_implied_rate" in r else " " * 9
        ours = f"{r['our_effective_rate']:7.3f}" if "our_effective_rate" in r else " " * 7
        lines.append(f"{r['model']:10s} {r['paper_mJ']:9.2f} {r['ours_mJ']:9.2f} "
                     f"{r['relative_difference']:+8.2%} {implied} {ours}")
    lines.append(f"fr: the one average input rate of every layer after the first conv that "
                 f"gives the energy. Our SNN rates: {mapping}, measured on "
                 f"{src.get('checkpoint', '?')} ({src.get('preset', '?')}, "
                 f"T={src['timesteps']}, mean spike rate {src['mean_spike_rate']:.3f}).")
    return "\n".join(lines)


def write_compare_csv(result: dict, path) -> Path:
    """One row per (network, convention, row): mJ per forward pass."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["network", "convention", "hardware", "row", "energy_mJ_per_forward"])
        for network in ("snn", "ann"):
            for name, priced in result.get(network, {}).items():
                for row, mj in priced["rows_per_forward_mJ"].items():
                    w.writerow([network, name, priced["hardware"], row, f"{mj:.6g}"])
    return Path(path)


def write_compare(out, result: dict) -> list[Path]:
    """``compare.json``, ``compare_rows.csv`` and the stacked bars, into folder ``out``."""
    from sddpm.hardware import plots

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return [write_json(out / "compare.json", result),
            write_compare_csv(result, out / "compare_rows.csv"),
            plots.plot_conventions(result, out / "energy_by_convention.png")]
