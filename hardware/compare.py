"""``sddpm energy CKPT --compare``: one sampling run priced under every convention.

The spiking model samples once with three observers on it: our profiler (``paper``,
``strict``, ``memory``), NeuroBench's hooks (``neurobench``) and the chip recorder,
which reads the populations' spikes onto the exported graph (``deployed``). Its ANN
twin, when there is one, samples the same images (same seed, sampler and steps) and
is priced under each convention's rule for ANNs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sddpm.errors import SddpmError
from sddpm.hardware.conventions import (
    CONVENTIONS,
    HOST_HARDWARE,
    Priced,
    price_counting,
    price_deployed,
    price_memory,
    price_neurobench,
)
from sddpm.hardware.hardware_costs import load_hardware_costs


def ann_twin(path) -> Path | None:
    """The ANN shipped beside an SNN checkpoint (``*-snn.pt`` -> ``*-ann.pt``), if any."""
    path = Path(path)
    if "snn" not in path.name:
        return None
    twin = path.with_name(path.name.replace("snn", "ann"))
    return twin if twin.is_file() else None


def _run(path, *, sampler, steps, n, seed, threshold, progress, require: str):
    """Profile ``path`` with NeuroBench's count and, for an SNN, the chip recorder."""
    from sddpm.export.torch_to_nir import export_nir
    from sddpm.hardware.deployed import ChipSpikeRecorder
    from sddpm.hardware.neurobench_count import NeuroBenchCounter
    from sddpm.hardware.profiler import profile_checkpoint

    held = {}

    def probes(model, payload):
        if payload["arch"] != require:
            raise SddpmError(f"{path} holds an {payload['arch'].upper()}; --compare needs "
                             f"an {require.upper()} here")
        held["neurobench"] = NeuroBenchCounter(model)
        if payload["arch"] == "snn":
            held["graph"] = export_nir(model, dtype=np.float32)
            held["chip"] = ChipSpikeRecorder(model, held["graph"])
            return [held["neurobench"], held["chip"]]
        return [held["neurobench"]]

    profile = profile_checkpoint(path, sampler=sampler, steps=steps, n=n, seed=seed,
                                 threshold=threshold, progress=progress, probes=probes)
    chip = held["chip"].profile({"checkpoint": str(path)}) if "chip" in held else None
    return profile, held["neurobench"].count(), chip


def price_all(profile, neurobench, chip) -> dict[str, Priced]:
    """Every convention of :data:`CONVENTIONS` on one run (``chip`` None for an ANN)."""
    from sddpm.export.torch_to_nir import is_host_module

    costs = {name: load_hardware_costs(c.hardware) for name, c in CONVENTIONS.items()}
    return {
        "paper": price_counting(profile, costs["paper"], "paper"),
        "strict": price_counting(profile, costs["strict"], "strict"),
        "neurobench": price_neurobench(neurobench, costs["neurobench"]),
        "memory": price_memory(profile, costs["memory"]),
        "deployed": price_deployed(profile, chip, costs["deployed"],
                                   load_hardware_costs(HOST_HARDWARE), is_host_module),
    }


def neurobench_vs_ours(profile, neurobench) -> list[dict]:
    """NeuroBench's operations beside ours, layer by layer, with why they differ."""
    ours = {l.name: (i, l) for i, l in enumerate(profile.layers)}
    rows = []
    for name, kind, effective in zip(neurobench.layers, neurobench.kind,
                                     neurobench.effective.mean(axis=0)):
        i, layer = ours[name]
        exact = float(profile.exact_events[:, i].mean())
        applications = profile.timesteps if layer.per_timestep else 1
        strict_op = "AC" if profile.arch == "snn" and layer.binary_input else "MAC"
        strict_ops = (float(profile.synaptic_ops()[:, i].mean()) if strict_op == "AC"
                      else float(layer.dense_macs * applications))
        why = []
        if kind != strict_op:
            why.append(f"kind: NeuroBench {kind}, strict {strict_op}")
        runs = effective / exact if exact else 1.0
        if exact and abs(runs - round(runs)) < 1e-6 and round(runs) > 1:
            why.append(f"NeuroBench counts the layer {round(runs)} times: it runs on the "
                       "input repeated over T, which we compute once")
        if strict_ops != exact:
            why.append("strict counts padding taps and, for MAC layers, zero inputs "
                       f"({strict_ops / exact - 1:+.2%} of the exact count)" if exact else
                       "no input was non-zero")
        rows.append({"layer": name, "neurobench_op": kind, "neurobench_ops": float(effective),
                     "our_exact_events": exact, "strict_op": strict_op,
                     "strict_ops": strict_ops,
                     "neurobench_over_exact": float(effective / exact) if exact else None,
                     "differences": why})
    return rows


def compare_checkpoint(path, *, ann: str | None = None, sampler: str = "ddim",
                       steps: int | None = 50, n: int = 8, seed: int = 0,
                       threshold: float | None = None, progress: bool = True) -> dict:
    """Price ``path`` (an SNN) and its ANN twin under every convention; ratios SNN/ANN."""
    from sddpm.hardware.neurobench_count import neurobench_version

    from sddpm.checkpoint import load_checkpoint
    from sddpm.presets import ModelConfig

    ann_path = ann or ann_twin(path)
    if ann_path is not None:  # before the SNN's run, which is the long part
        twin, own = load_checkpoint(ann_path), load_checkpoint(path)
        if twin["arch"] != "ann":
            raise SddpmError(f"{ann_path} holds an {twin['arch'].upper()}; --ann needs an ANN "
                             "twin of the spiking checkpoint")
        # a twin is the same architecture: otherwise the ratio compares two networks
        theirs, ours = (ModelConfig.from_dict(c["model_config"]) for c in (twin, own))
        if theirs.name != ours.name:
            raise SddpmError(f"{ann_path} is a {theirs.name} model, {path} a {ours.name} one; "
                             "give the ANN twin of the same preset with --ann")
    options = dict(sampler=sampler, steps=steps, n=n, seed=seed, progress=progress)
    profile, nb, chip = _run(path, threshold=threshold, require="snn", **options)
    snn = price_all(profile, nb, chip)
    result = {
        "checkpoint": str(path), "ann_checkpoint": str(ann_path) if ann_path else None,
        "sampler": sampler, "denoising_steps": len(profile.diffusion_t), "images": n,
        "seed": seed, "timesteps": profile.timesteps, "neurobench_version": neurobench_version(),
        "conventions": {name: {"rule": c.rule, "source": c.source, "ann_rule": c.ann}
                        for name, c in CONVENTIONS.items()},
        "snn": {name: p.to_dict() for name, p in snn.items()},
        "snn_layers": [l.name for l in profile.layers],
        "neurobench_vs_ours": neurobench_vs_ours(profile, nb),
        "neurobench_totals": nb.totals(),
        "chip_maps": len(chip.layers), "chip_populations": len(chip.populations),
    }
    if ann_path is not None:
        ann_profile, ann_nb, _ = _run(ann_path, threshold=None, require="ann", **options)
        priced = price_all(ann_profile, ann_nb, None)
        result["ann"] = {name: p.to_dict() for name, p in priced.items()}
        result["snn_over_ann"] = {name: snn[name].per_image_mj / priced[name].per_image_mj
                                  for name in CONVENTIONS}
    return result


def format_compare(result: dict) -> str:
    """Per-layer table of the SNN (mJ per forward), then totals and ratios."""
    names = list(CONVENTIONS)
    snn = result["snn"]
    lines = [f"{result['checkpoint']}: {result['sampler']} ({result['denoising_steps']} steps), "
             f"{result['images']} images, T={result['timesteps']}; mJ per forward pass",
             f"{'layer':34s} " + " ".join(f"{n:>10s}" for n in names)]
    rows = list(result["snn_layers"])
    rows += [r for r in snn["memory"]["rows_per_forward_mJ"] if r not in rows]
    for row in rows:
        cells = []
        for name in names:
            value = snn[name]["rows_per_forward_mJ"].get(row)
            cells.append(f"{value:10.4g}" if value is not None else f"{'-':>10s}")
        lines.append(f"{row[:34]:34s} " + " ".join(cells))
    chip = [r for r in snn["deployed"]["rows_per_forward_mJ"] if r.startswith("chip ")]
    chip_mj = sum(snn["deployed"]["rows_per_forward_mJ"][r] for r in chip)
    lines.append(f"{'chip network (' + str(len(chip) - 1) + ' maps + neurons)':34s} "
                 + " ".join(f"{chip_mj:10.4g}" if n == "deployed" else f"{'-':>10s}"
                            for n in names))
    lines += ["", f"{'convention':11s} {'hardware':28s} {'SNN/fwd':>10s} {'SNN/image':>10s}"
              + (f" {'ANN/fwd':>10s} {'ANN/image':>10s} {'SNN/ANN':>8s}" if "ann" in result
                 else "")]
    for name in names:
        s = snn[name]
        line = (f"{name:11s} {s['hardware'][:28]:28s} {s['energy_per_forward_mJ']:10.4f} "
                f"{s['energy_per_image_mJ']:10.3f}")
        if "ann" in result:
            a = result["ann"][name]
            line += (f" {a['energy_per_forward_mJ']:10.4f} {a['energy_per_image_mJ']:10.3f} "
                     f"{result['snn_over_ann'][name]:8.3f}")
        lines.append(line)
    if "ann" not in result:
        lines.append("no ANN twin beside the checkpoint: give one with --ann CKPT for ratios")
    tot = result["neurobench_totals"]
    lines.append(f"NeuroBench {result['neurobench_version']} SynapticOperations per forward: "
                 f"Effective_ACs {tot['Effective_ACs']:.6g}, Effective_MACs "
                 f"{tot['Effective_MACs']:.6g}, Dense {tot['Dense']:.6g}")
    return "\n".join(lines)
