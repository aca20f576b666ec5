"""``sddpm simulate BUNDLE --backend lava``: denoising steps in Lava, compared with torch.

Runs K DDIM denoising steps whose noise network runs in Lava, and at each step compares
with the torch reference on the same x_t: spike agreement per population and relative
error of epsilon. In floating point the reference is the trained model when
``--checkpoint`` is given, else the bundle's graph in the PyTorch reference executor
(which the export tests show equal to the trained model). With ``--fixed-point`` Lava
runs its ``fixed_pt`` models on the bundle's integers; the reference is then the
PyTorch fixed-point emulation (the same integers, lava-dl SLAYER neurons), and the float
model is compared as well: what quantisation changes. Outputs in OUT:
``simulate.json``, ``images_lava.png``, ``images_torch.png``, ``comparison.png``
(and ``images_float.png`` in fixed point).
"""

from __future__ import annotations

import time
from pathlib import Path

from sddpm.errors import SddpmError
from sddpm.files import save_figure, write_json
from sddpm.outputs import writable_folder

BACKENDS = ("lava",)


def _check_options(backend: str, sampler: str, out) -> Path:
    if backend not in BACKENDS:
        raise SddpmError(f"unknown backend {backend!r}; expected one of "
                         f"{', '.join(BACKENDS)}")
    if sampler != "ddim":
        raise SddpmError("simulate runs K DDIM steps (--sampler ddim); DDPM's 1000 steps "
                         "are out of reach of a CPU Lava simulation")
    return writable_folder(out, "--out")


def _reference(checkpoint, graph, manifest):
    from sddpm.simulations.denoise import GraphReference, ModelReference

    if not checkpoint:
        return GraphReference(graph), "reference executor (PyTorch, from the bundle)"
    if "finetuned_from" in manifest["source"]:
        raise SddpmError("this bundle was fine-tuned: its weights are no checkpoint's any more; "
                         "simulate it without --checkpoint (its own float graph is the "
                         "reference)")
    from sddpm.sampling import model_from_checkpoint

    model, payload = model_from_checkpoint(checkpoint,
                                           threshold=manifest["source"].get("threshold"))
    if model.config.to_dict() != manifest["model_config"]:
        raise SddpmError(f"{checkpoint} has another model config than the bundle; "
                         "compare with the checkpoint the bundle was exported from")
    from sddpm.export.nir_file import graph_info

    populations = graph_info(graph)["populations"]
    return ModelReference(model, populations), f"torch model {checkpoint}"


def _plot(comparisons, path) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.4))
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 1]})
    names = list(comparisons[0].spike_agreement)
    worst = [min(c.spike_agreement[n] for c in comparisons) for n in names]
    left.bar(range(len(names)), [100 * (1 - w) for w in worst])
    left.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
    left.set_ylabel("% spikes differing (worst step)")
    left.set_title("Lava vs torch, per IF population")
    right.semilogy([c.t for c in comparisons],
                   [max(c.eps_rel_error, 1e-17) for c in comparisons], marker="o")
    right.invert_xaxis()
    right.set_xlabel("diffusion step t")
    right.set_ylabel("relative error of eps")
    save_figure(fig, path, dpi=110, bbox_inches="tight")
    return Path(path)


def _relative(value: float, reference: float) -> float:
    if reference == 0:
        return 0.0 if value == 0 else float("inf")
    return abs(value / reference - 1)


def run_simulation(bundle, *, out, denoise_steps: int = 3, n: int = 1, seed: int = 0,
                   fixed_point: bool = False, checkpoint=None, backend: str = "lava",
                   sampler: str = "ddim", chip_energy=None, progress: bool = True) -> dict:
    """K = ``denoise_steps`` DDIM steps of ``n`` images with the noise network in Lava.

    Every step is compared with the reference (see the module docstring); the report
    (also ``OUT/simulate.json``) and the images are written into ``out``.
    ``chip_energy``, a :class:`sddpm.hardware.deployed.DeployedEnergy` or any callable
    ``(graph, spikes, t) -> mJ`` with a ``description``, prices both sides' spikes at
    every step; without it the energies are NaN.
    """
    from sddpm.diffusion import GaussianDiffusion, sample
    from sddpm.export.lava_bundle import load_bundle, load_fixed_point
    from sddpm.export.nir_to_lava import LavaNetwork
    from sddpm.sampling import save_grid
    from sddpm.simulations.denoise import FixedPointReference, LavaNoisePredictor
    from sddpm.simulations.lava_runner import LavaSession

    out = _check_options(backend, sampler, out)
    graph, manifest = load_bundle(bundle)
    float_reference, float_name = _reference(checkpoint, graph, manifest)
    fixed = load_fixed_point(bundle, graph, manifest) if fixed_point else None
    if fixed is None:
        reference, reference_name = float_reference, float_name
    else:
        reference = FixedPointReference(graph, fixed)
        reference_name = (f"PyTorch fixed-point emulation ({fixed.weight_bits}-bit weights, "
                          "lava-dl SLAYER CUBA neurons)")
    T = manifest["timesteps"]
    config = manifest["model_config"]
    shape = (n, config["image_channels"], config["image_size"], config["image_size"])
    t0 = time.perf_counter()
    network = LavaNetwork(graph, T, tap_spikes=True, fixed=fixed)
    session = LavaSession(network)
    try:
        predictor = LavaNoisePredictor(graph, session, reference=reference,
                                       float_reference=float_reference if fixed else None,
                                       chip_energy=chip_energy)
        diffusion = GaussianDiffusion(config["diffusion_steps"])
        images = sample(predictor, diffusion, shape, sampler="ddim", steps=denoise_steps,
                        seed=seed, progress=progress)
    finally:
        session.stop()
    wall = time.perf_counter() - t0

    def sample_with(ref):
        return sample(lambda x, t: ref(x, t)[0].float(), diffusion, shape, sampler="ddim",
                      steps=denoise_steps, seed=seed, progress=False)

    torch_images = sample_with(reference)
    steps = predictor.comparisons
    report = {
        "bundle": str(bundle), "backend": "lava", "precision": session.tag,
        "weight_bits": fixed.weight_bits if fixed else None,
        "reference": reference_name, "images": n, "seed": seed,
        "sampler": "ddim", "denoise_steps": len(steps), "timesteps": T,
        "latency_steps": network.schedule.latency(),
        "lava_processes": len(network.processes),
        "lava_steps": session.lava_steps, "compile_s": round(session.compile_seconds, 2),
        "run_s": round(session.run_seconds, 2), "wall_s": round(wall, 2),
        "seconds_per_lava_step": session.run_seconds / max(session.lava_steps, 1),
        "worst_spike_agreement": min(s.worst_agreement for s in steps),
        "spike_mismatches": sum(sum(s.mismatches.values()) for s in steps),
        "reference_spikes": sum(sum(s.reference_spikes.values()) for s in steps),
        "max_eps_rel_error": max(s.eps_rel_error for s in steps),
        "image_max_abs_difference": float((images - torch_images).abs().max()),
        "energy_hardware": getattr(chip_energy, "description", "not priced"),
        "max_energy_rel_difference": max(_relative(s.energy_lava_mj, s.energy_reference_mj)
                                         for s in steps),
        "steps": [{"t": s.t, "eps_rel_error": s.eps_rel_error,
                   "worst_spike_agreement": s.worst_agreement,
                   "energy_lava_mJ": s.energy_lava_mj,
                   "energy_reference_mJ": s.energy_reference_mj,
                   "spike_agreement": s.spike_agreement, "firing_rate": s.firing_rate}
                  for s in steps],
    }
    if fixed is not None:
        float_images = sample_with(float_reference)
        save_grid(float_images, out / "images_float.png")
        report["against_float"] = _against_float(predictor.float_comparisons, float_name,
                                                 images, float_images)
    write_json(out / "simulate.json", report)
    save_grid(images, out / "images_lava.png")
    save_grid(torch_images, out / "images_torch.png")
    _plot(steps, out / "comparison.png")
    return report


def _against_float(comparisons, name, images, float_images) -> dict:
    """What quantisation changed: the fixed-point run against the float model."""
    return {
        "reference": name,
        "eps_rel_error": [s.eps_rel_error for s in comparisons],
        "mean_spike_agreement": [sum(s.spike_agreement.values()) / len(s.spike_agreement)
                                 for s in comparisons],
        "worst_spike_agreement": [s.worst_agreement for s in comparisons],
        "image_max_abs_difference": float((images - float_images).abs().max()),
        "image_rms_difference": float((images - float_images).pow(2).mean().sqrt()),
    }


def print_report(r: dict) -> None:
    print(f"{r['denoise_steps']} DDIM steps of {r['images']} image(s) in Lava "
          f"({r['precision']}, {r['lava_processes']} processes, latency "
          f"{r['latency_steps']} steps): {r['lava_steps']} Lava steps, "
          f"{r['seconds_per_lava_step']:.3f} s each, compile {r['compile_s']} s")
    for s in r["steps"]:
        print(f"  t={s['t']:4d}: spikes agree {100 * s['worst_spike_agreement']:.3f}% in the "
              f"worst population, eps relative error {s['eps_rel_error']:.2e}, chip energy "
              f"{s['energy_lava_mJ']:.4f} mJ from Lava's spikes, "
              f"{s['energy_reference_mJ']:.4f} mJ from the reference's")
    print(f"  {r['spike_mismatches']:,} of {r['reference_spikes']:,} reference spikes differ")
    print(f"  against the {r['reference']}; images differ by at most "
          f"{r['image_max_abs_difference']:.2e}")
    f = r.get("against_float")
    if f:
        errors = ", ".join(f"{e:.3f}" for e in f["eps_rel_error"])
        agree = ", ".join(f"{100 * a:.1f}%" for a in f["mean_spike_agreement"])
        print(f"  fixed point against the float {f['reference']}: eps relative error "
              f"{errors}; spikes agree {agree} (mean over populations); final images differ "
              f"by {f['image_rms_difference']:.3f} RMS, {f['image_max_abs_difference']:.3f} max")
