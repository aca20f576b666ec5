"""``sddpm energy``: profile a checkpoint's sampling run and price it; Table 3 beside ours."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from hardware.energy import CONVENTIONS, energy_report
from hardware.hardware_profiles import load_profile
from hardware.spike_profile import SpikeProfile
from sddpm.checkpoint import SHIPPED_CHECKPOINT
from sddpm.errors import SddpmError
from sddpm.outputs import writable_folder



def profile_checkpoint(path, *, sampler: str = "ddim", steps: int | None = 50, n: int = 8,
                       seed: int = 0, threshold: float | None = None, progress: bool = True,
                       require_snn: bool = False) -> SpikeProfile:
    """Sample ``n`` images from a checkpoint with every layer's activity recorded."""
    from sddpm.diffusion import SAMPLERS, GaussianDiffusion
    from sddpm.presets import ModelConfig
    from sddpm.sampling import model_from_checkpoint

    from hardware.profiler import profile_sampling

    if sampler not in SAMPLERS:
        raise SddpmError(f"unknown sampler {sampler!r}; choose 'ddpm' or 'ddim'")
    model, payload = model_from_checkpoint(path, threshold=threshold)
    if require_snn and payload["arch"] != "snn":
        raise SddpmError(f"{path} holds an ANN; Table 3's SNN rows need the spike rates of "
                         "a spiking model")
    config = ModelConfig.from_dict(payload["model_config"])
    diffusion = GaussianDiffusion(config.diffusion_steps)
    meta = {"checkpoint": str(path), "preset": config.name, "arch": payload["arch"],
            "trained_steps": int(payload.get("step", 0)), "threshold": threshold or 1.0,
            "source": "torch"}
    profile, _ = profile_sampling(model, diffusion, config, n=n, sampler=sampler,
                                  steps=steps if sampler == "ddim" else None, seed=seed,
                                  progress=progress, meta=meta)
    return profile


def energy_per_image(path, *, sampler: str = "ddim", steps: int | None = 50, n: int = 4,
                     seed: int = 0, hardware: str = "45nm-fp32") -> dict:
    """mJ per generated image under each convention, from ``n`` profiled images."""
    profile = profile_checkpoint(path, sampler=sampler, steps=steps, n=n, seed=seed,
                                 progress=False)
    return {f"energy_{c}_mJ_per_image": energy_report(profile, load_profile(hardware),
                                                      c).per_image_mj
            for c in CONVENTIONS}


def write_layer_csv(report, path) -> Path:
    with open(path, "w", newline="") as f:
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
    from hardware import plots

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    energy_json = out / "energy.json"
    tmp = energy_json.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report.to_dict(), indent=2))
    os.replace(tmp, energy_json)
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


def _check_table3_options(args) -> None:
    # the paper's figures are 45 nm fp32 under its own convention; nothing else compares
    if args.hardware != "45nm-fp32" or args.convention != "paper" or args.out:
        raise SddpmError("--reproduce-table3 prices on 45nm-fp32 under the 'paper' "
                         "convention and prints only; drop --hardware, --convention and --out")


def run_energy(args) -> None:
    """The ``sddpm energy`` command (arguments parsed in :mod:`sddpm.cli`)."""
    if args.reproduce_table3:
        _check_table3_options(args)
    hardware = load_profile(args.hardware)
    if args.convention not in CONVENTIONS:
        raise SddpmError(f"unknown convention {args.convention!r}; expected one of "
                         f"{', '.join(CONVENTIONS)}")
    out = writable_folder(args.out, "--out") if args.out else None
    if args.profile:
        profile = SpikeProfile.load_h5(args.profile)
    else:
        checkpoint = args.checkpoint or (SHIPPED_CHECKPOINT if args.reproduce_table3 else None)
        if checkpoint is None:
            raise SddpmError("give a checkpoint to profile, or --profile FILE.h5")
        profile = profile_checkpoint(checkpoint, sampler=args.sampler, steps=args.steps,
                                     n=args.n, seed=args.seed, threshold=args.threshold,
                                     progress=not args.json,
                                     require_snn=args.reproduce_table3)
    if args.reproduce_table3:
        from hardware.table3 import reproduce_table3

        result = reproduce_table3(profile, hardware)
        print(json.dumps(result, indent=2) if args.json else format_table3(result))
        return
    report = energy_report(profile, hardware, args.convention)
    written = write_outputs(out, profile, report) if out else []
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(format_report(report))
        for path in written:
            print(f"wrote {path}")
