"""``sddpm simulate BUNDLE --backend lava``: denoising steps in Lava, compared with torch.

Runs the last K network calls of a sampler's schedule (DDIM, DPM-Solver++, UniPC, ...)
with the noise network in Lava, and at each call compares
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
    from sddpm.diffusion import check_sampler

    if backend not in BACKENDS:
        raise SddpmError(f"unknown backend {backend!r}; expected one of "
                         f"{', '.join(BACKENDS)}")
    check_sampler(sampler)
    return writable_folder(out, "--out")


def _reference(checkpoint, graph, manifest):
    from sddpm.simulations.denoise import GraphReference, ModelReference

    if not checkpoint:
        return GraphReference(graph), "reference executor (PyTorch, from the bundle)"
    if "finetuned_from" in manifest["source"]:
        raise SddpmError("this bundle was fine-tuned: its weights are no checkpoint's any more; "
                         "simulate it without --checkpoint (its own float graph is the "
                         "reference)")
    from sddpm.presets import ModelConfig
    from sddpm.sampling import model_from_checkpoint

    model, _ = model_from_checkpoint(checkpoint,
                                           threshold=manifest["source"].get("threshold"))
    # as configs, not dicts: a bundle written before a field existed lacks its key
    if model.config != ModelConfig.from_dict(manifest["model_config"]):
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


def _denoise_split(denoise_steps, calls: int) -> int:
    """K: the last K of a schedule's ``calls`` network calls run in Lava."""
    K = calls if denoise_steps == "all" else int(denoise_steps)
    if not 1 <= K <= calls:
        raise SddpmError(f"--denoise-steps {denoise_steps} is more than the schedule's "
                         f"{calls} network calls; the Lava calls are the last K (K <= the "
                         "calls of --steps, which a second-order sampler doubles), or 'all'")
    return K


#: at most this much shared memory for the spike taps' host channels
TAP_BUFFER_BYTES = 2**28


def tap_buffer_steps(graph, tapped) -> int:
    """Frames each host channel holds: 16, or fewer where the taps would hold more than
    :data:`TAP_BUFFER_BYTES` (16 frames of cifar10's 3.4 M neurons in float64 are
    437 MB); runs are chunked to it."""
    import numpy as np

    neurons = sum(int(np.size(graph.nodes[n].v_threshold)) for n in tapped)
    return int(min(16, max(2, TAP_BUFFER_BYTES // (8 * max(neurons, 1)))))


def tapped_populations(graph, spike_taps: str) -> list:
    """The populations ``--spike-taps all|none|K/M`` reads, in the graph's order."""
    import nir

    populations = [n for n, node in graph.nodes.items() if isinstance(node, nir.IF)]
    if spike_taps in ("all", True):
        return populations
    if spike_taps in ("none", False):
        return []
    try:
        k, m = (int(v) for v in str(spike_taps).split("/"))
    except ValueError:
        k = m = 0
    if not 1 <= k <= m <= len(populations):
        raise SddpmError(f"--spike-taps {spike_taps!r}: expected all, none or K/M with "
                         f"1 <= K <= M <= {len(populations)} (the K-th of M parts of the "
                         "populations)")
    return populations[k - 1::m]


def _first_steps(reference):
    """The reference as a sampler's model (its spikes dropped)."""
    return lambda x, t: reference(x, t)[0].to(x.dtype)


def run_simulation(bundle, *, out, denoise_steps=3, steps: int = 20, n: int = 1,
                   seed: int = 0, fixed_point: bool = False, checkpoint=None,
                   backend: str = "lava", sampler: str = "ddim", chip_energy=None,
                   progress: bool = True, max_memory: int | None = None,
                   conv_model: str = "fast", spike_taps: str = "all") -> dict:
    """An S-step schedule of ``n`` images whose last K network calls run in Lava.

    ``sampler`` is any of :data:`sddpm.diffusion.SAMPLERS` (DDIM, DPM-Solver++, UniPC,
    ...); ``steps`` is its S, which makes C network calls (C = S but for a second-order
    sampler such as Heun); ``denoise_steps`` is K (or ``"all"``: K = C). The first C - K calls
    are computed by the reference (the torch model or the bundle's graph; the
    fixed-point emulation with ``fixed_point``), the last K by Lava, the images
    pipelined. Every Lava step is then compared with the reference on
    the same x_t (see the module docstring); the report (also ``OUT/simulate.json``) and
    the images are written into ``out``. Before anything is compiled, the run's memory
    and time are estimated (:mod:`sddpm.simulations.budget`) and a run that cannot fit
    in ``max_memory`` bytes (default: what the machine has available) is refused.
    ``spike_taps``: ``"all"`` reads every population's spikes; ``"none"`` none (one
    process and one host channel fewer per population: Lava is then checked on its
    output stream alone, in fixed point integer for integer, and the spike figures of
    the report are None); ``"K/M"`` the K-th of M interleaved parts of the populations,
    so that M runs of a deterministic schedule together compare every spike on a
    machine that cannot hold every tap at once.
    ``chip_energy``, a :class:`sddpm.hardware.deployed.DeployedEnergy` or any callable
    ``(graph, spikes, t) -> mJ`` with a ``description``, prices both sides' spikes at
    every step; without it the energies are NaN.
    """
    from sddpm.diffusion import GaussianDiffusion, call_schedule, sample
    from sddpm.export.lava_bundle import load_bundle, load_fixed_point
    from sddpm.export.nir_to_lava import LavaNetwork
    from sddpm.sampling import save_grid
    from sddpm.simulations.budget import check_budget, estimate_run
    from sddpm.simulations.denoise import FixedPointReference, HandOver, LavaNoisePredictor
    from sddpm.simulations.lava_runner import LavaSession

    out = _check_options(backend, sampler, out)
    S = steps
    graph, manifest = load_bundle(bundle)
    fixed = load_fixed_point(bundle, graph, manifest) if fixed_point else None
    T = manifest["timesteps"]
    config = manifest["model_config"]
    diffusion = GaussianDiffusion(config["diffusion_steps"])
    C = len(call_schedule(diffusion, sampler, S))
    K = _denoise_split(denoise_steps, C)
    tapped = tapped_populations(graph, spike_taps)
    estimate = estimate_run(graph, T, images=n, denoise_steps=K, fixed=fixed is not None,
                            taps=len(tapped))
    warnings = check_budget(estimate, max_memory)
    if progress:
        for line in [estimate.summary(), *warnings]:
            print(line, flush=True)

    def references(graph, with_float: bool = True):
        """(reference, its name, the float reference and its name): built on demand; in
        fixed point without ``with_float``, the float reference is not built (None)."""
        if fixed is not None and not with_float:
            return FixedPointReference(graph, fixed), None, None, None
        float_reference, float_name = _reference(checkpoint, graph, manifest)
        if fixed is None:
            return float_reference, float_name, None, float_name
        name = (f"PyTorch fixed-point emulation ({fixed.weight_bits}-bit weights, "
                "lava-dl SLAYER CUBA neurons)")
        return FixedPointReference(graph, fixed), name, float_reference, float_name

    shape = (n, config["image_channels"], config["image_size"], config["image_size"])
    # Lava forks one process per Lava process from this one: while it runs, this process
    # holds the Lava network and the host side, not the graph or a reference model
    box: dict = {"graph": graph}
    # the reference of the Lava run alone, not the float one beside it
    first = _first_steps(references(graph, with_float=False)[0]) if C > K else None
    del graph

    def lava_predictor():
        graph = box.pop("graph")
        network = LavaNetwork(graph, T, tap_spikes=tapped, fixed=fixed,
                              buffer_steps=tap_buffer_steps(graph, tapped))
        predictor = LavaNoisePredictor(graph, None, record=True)
        predictor.graph = network.graph = None
        del graph
        predictor.session = box["session"] = LavaSession(network, conv_model=conv_model)
        box["network"], box["predictor"] = network, predictor
        return predictor

    model = HandOver(C - K, first, lava_predictor)
    del first
    t0 = time.perf_counter()
    try:
        images = sample(model, diffusion, shape, sampler=sampler, steps=S, seed=seed,
                        progress=progress)
    finally:
        if "session" in box:
            box["session"].stop()
    wall = time.perf_counter() - t0
    network, session, predictor = box["network"], box["session"], box["predictor"]
    graph, _ = load_bundle(bundle)
    predictor.graph, predictor.chip_energy = graph, chip_energy
    reference, reference_name, float_reference, float_name = references(graph)
    predictor.compare_recorded(reference, float_reference, progress=progress)

    def sample_with(ref):
        return sample(lambda x, t: ref(x, t)[0].float(), diffusion, shape, sampler=sampler,
                      steps=S, seed=seed, progress=progress)

    torch_images = sample_with(reference)
    steps_run = predictor.comparisons
    report = {
        "bundle": str(bundle), "backend": "lava", "precision": session.tag,
        "conv_model": session.conv_model,
        "bundle_dtype": manifest["source"].get("dtype", "float64"),
        "weight_bits": fixed.weight_bits if fixed else None,
        "reference": reference_name, "images": n, "seed": seed,
        "sampler": sampler, "schedule_steps": S, "network_calls": C,
        "denoise_steps": len(steps_run), "steps_before_lava": C - K, "timesteps": T,
        "latency_steps": network.schedule.latency(),
        "lava_processes": len(network.processes),
        "lava_steps": session.lava_steps, "compile_s": round(session.compile_seconds, 2),
        "run_s": round(session.run_seconds, 2), "wall_s": round(wall, 2),
        "seconds_per_lava_step": session.run_seconds / max(session.lava_steps, 1),
        "estimate": estimate.to_dict(),
        "parent_bytes_at_fork": session.parent_bytes_at_fork,
        "spike_taps": str(spike_taps), "tapped_populations": tapped,
        "worst_spike_agreement": (min(s.worst_agreement for s in steps_run)
                                  if tapped else None),
        "spike_mismatches": (sum(sum(s.mismatches.values()) for s in steps_run)
                             if tapped else None),
        "reference_spikes": (sum(sum(s.reference_spikes.values()) for s in steps_run)
                             if tapped else None),
        "max_eps_rel_error": max(s.eps_rel_error for s in steps_run),
        # fixed point: integer output stream entries that differ from the emulation's
        "stream_mismatches": (None if steps_run[0].stream_mismatches is None
                              else sum(s.stream_mismatches for s in steps_run)),
        "image_max_abs_difference": float((images - torch_images).abs().max()),
        "energy_hardware": getattr(chip_energy, "description", "not priced"),
        "max_energy_rel_difference": max(_relative(s.energy_lava_mj, s.energy_reference_mj)
                                         for s in steps_run),
        "steps": [{"t": s.t, "eps_rel_error": s.eps_rel_error,
                   "stream_mismatches": s.stream_mismatches,
                   "worst_spike_agreement": s.worst_agreement,
                   "energy_lava_mJ": s.energy_lava_mj,
                   "energy_reference_mJ": s.energy_reference_mj,
                   "spike_agreement": s.spike_agreement, "firing_rate": s.firing_rate}
                  for s in steps_run],
    }
    if fixed is not None:
        float_images = sample_with(float_reference)
        save_grid(float_images, out / "images_float.png")
        report["against_float"] = _against_float(predictor.float_comparisons, float_name,
                                                 images, float_images)
    write_json(out / "simulate.json", report)
    save_grid(images, out / "images_lava.png")
    save_grid(torch_images, out / "images_torch.png")
    if tapped:
        _plot(steps_run, out / "comparison.png")
    return report


def _against_float(comparisons, name, images, float_images) -> dict:
    """What quantisation changed: the fixed-point run against the float model."""
    return {
        "reference": name,
        "eps_rel_error": [s.eps_rel_error for s in comparisons],
        "mean_spike_agreement": [sum(s.spike_agreement.values()) / len(s.spike_agreement)
                                 if s.spike_agreement else None for s in comparisons],
        "worst_spike_agreement": [s.worst_agreement if s.spike_agreement else None
                                  for s in comparisons],
        "image_max_abs_difference": float((images - float_images).abs().max()),
        "image_rms_difference": float((images - float_images).pow(2).mean().sqrt()),
    }


def print_report(r: dict) -> None:
    before = (f"the first {r['steps_before_lava']} in PyTorch ({r['reference']}), "
              if r["steps_before_lava"] else "")
    print(f"{r['sampler']}-{r['schedule_steps']} ({r['network_calls']} network calls) of "
          f"{r['images']} image(s): {before}the last "
          f"{r['denoise_steps']} in Lava "
          f"({r['precision']}, {r['lava_processes']} processes, latency "
          f"{r['latency_steps']} steps): {r['lava_steps']} Lava steps, "
          f"{r['seconds_per_lava_step']:.3f} s each, compile {r['compile_s']} s")
    tapped = r.get("tapped_populations")
    if tapped is not None and r["spike_taps"] != "all":
        print(f"  spikes read from {len(tapped)} populations (--spike-taps "
              f"{r['spike_taps']})")
    for s in r["steps"]:
        if r["worst_spike_agreement"] is None:
            print(f"  t={s['t']:4d}: eps relative error {s['eps_rel_error']:.2e} (spikes not "
                  "read: --spike-taps none)")
            continue
        print(f"  t={s['t']:4d}: spikes agree {100 * s['worst_spike_agreement']:.3f}% in the "
              f"worst population, eps relative error {s['eps_rel_error']:.2e}, chip energy "
              f"{s['energy_lava_mJ']:.4f} mJ from Lava's spikes, "
              f"{s['energy_reference_mJ']:.4f} mJ from the reference's")
    if r["spike_mismatches"] is not None:
        print(f"  {r['spike_mismatches']:,} of {r['reference_spikes']:,} reference spikes "
              "differ")
    if r.get("stream_mismatches") is not None:
        print(f"  integer output stream: {r['stream_mismatches']:,} entries differ over "
              f"{r['denoise_steps']} steps")
    print(f"  against the {r['reference']}; images differ by at most "
          f"{r['image_max_abs_difference']:.2e}")
    f = r.get("against_float")
    if f:
        errors = ", ".join(f"{e:.3f}" for e in f["eps_rel_error"])
        agree = ", ".join("not read" if a is None else f"{100 * a:.1f}%"
                          for a in f["mean_spike_agreement"])
        print(f"  fixed point against the float {f['reference']}: eps relative error "
              f"{errors}; spikes agree {agree} (mean over populations); final images differ "
              f"by {f['image_rms_difference']:.3f} RMS, {f['image_max_abs_difference']:.3f} max")
