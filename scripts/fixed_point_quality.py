"""What Loihi fixed point does to samples: classifier-FID/KID per weight width.

Samples the same seeds with the float model and with the fixed-point deployment of its
export (the bit-exact PyTorch emulation of Lava ``fixed_pt``) at each ``--bits``, and
measures the relative error of epsilon against the float graph on a probe batch at
several diffusion steps.

    python scripts/fixed_point_quality.py [CKPT] [--bits 8 6 4] [--n 300] [--steps 20]
        [--bundles DIR ...] [--out runs/sweeps/fixed_point]

``--bundles`` adds deployment bundles of the same model (fine-tuned ones, from
``sddpm finetune --fixed-point``): their fixed-point networks are sampled the same way.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from sweep_table import save_rows, write_csv

from sddpm.allocator import keep_freed_memory
from sddpm.checkpoint import SHIPPED_CHECKPOINT
from sddpm.diffusion import GaussianDiffusion
from sddpm.evaluation import DEFAULT_CLASSIFIER, evaluate_images
from sddpm.files import save_figure
from sddpm.presets import ModelConfig
from sddpm.sampling import model_from_checkpoint, sample_images

PROBE_STEPS = (10, 100, 300, 500, 700, 900)


def probe_errors(float_graph_predictor, fixed_predictor, config, seed: int) -> dict:
    """Relative error of eps, fixed against float, at each probe diffusion step."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(16, config.image_channels, config.image_size, config.image_size,
                    generator=g, dtype=torch.float64)
    errors = {}
    for step in PROBE_STEPS:
        t = torch.full((x.shape[0],), step)
        eps_float, spikes_float = float_graph_predictor(x, t)
        eps_fixed, spikes_fixed = fixed_predictor(x, t)
        errors[step] = {
            "eps_rel_error": float((eps_fixed - eps_float).norm() / eps_float.norm()),
            "spike_agreement": float(np.mean([(spikes_fixed[k].double() == spikes_float[k])
                                              .double().mean() for k in spikes_float])),
            "rate_fixed": float(np.mean([s.double().mean() for s in spikes_fixed.values()])),
            "rate_float": float(np.mean([s.double().mean() for s in spikes_float.values()])),
        }
    return errors


def plot(rows, path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3))
    fid_ax, kid_ax, eps_ax = fig.subplots(1, 3)
    fixed = [r for r in rows if r["bits"] is not None and not r.get("bundle")]
    tuned = [r for r in rows if r.get("bundle")]
    (ref,) = [r for r in rows if r["bits"] is None]
    bits = [r["bits"] for r in fixed]
    fid_ax.plot(bits, [r["fid"] for r in fixed], marker="o", label="fixed point")
    if tuned:
        fid_ax.scatter([r["bits"] for r in tuned], [r["fid"] for r in tuned], marker="*",
                       s=80, color="g", label="fine-tuned", zorder=3)
    fid_ax.axhline(ref["fid"], color="k", ls="--", label="float")
    fid_ax.set_xlabel("weight bits")
    fid_ax.set_ylabel("classifier-FID")
    fid_ax.legend()
    kid_ax.errorbar(bits, [r["kid_mean"] for r in fixed], yerr=[r["kid_std"] for r in fixed],
                    marker="o", capsize=3)
    kid_ax.axhline(ref["kid_mean"], color="k", ls="--")
    kid_ax.set_xlabel("weight bits")
    kid_ax.set_ylabel("classifier-KID")
    for r in fixed + tuned:
        steps = sorted(int(s) for s in r["probe"])
        label = f"{r['bits']} bits" + (", fine-tuned" if r.get("bundle") else "")
        eps_ax.semilogy(steps, [r["probe"][s]["eps_rel_error"] for s in steps], marker="o",
                        label=label)
    eps_ax.set_xlabel("diffusion step t")
    eps_ax.set_ylabel("rel. error of eps vs float")
    eps_ax.legend()
    fig.suptitle(f"Fixed point vs float, {ref['images']} images, DDIM-{ref['sampler_steps']}")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def main() -> None:
    from sddpm.errors import SddpmError
    from sddpm.export.executor import ExportedNoisePredictor
    from sddpm.export.lava_bundle import load_bundle, load_fixed_point
    from sddpm.export.quantize import quantize_graph
    from sddpm.export.torch_to_nir import export_nir
    from sddpm.simulations.fixed_emulator import FixedPointNoisePredictor

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", default=str(SHIPPED_CHECKPOINT))
    parser.add_argument("--bits", type=int, nargs="*", default=[8, 6, 4])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--bundles", nargs="*", default=[])
    parser.add_argument("--out", default="runs/sweeps/fixed_point")
    args = parser.parse_args()
    keep_freed_memory()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model, payload = model_from_checkpoint(args.checkpoint)
    config = model.config
    diffusion = GaussianDiffusion(config.diffusion_steps)
    common = dict(n=args.n, sampler="ddim", steps=args.steps, seed=args.seed, batch=args.batch,
                  progress=False)
    rows = []

    def measure(bits, predictor, extra):
        t0 = time.perf_counter()
        images = sample_images(predictor, diffusion, config, **common)
        r = evaluate_images(images, DEFAULT_CLASSIFIER)
        r.update({"bits": bits, "images": args.n, "sampler": "ddim", "sampler_steps": args.steps,
                  "seed": args.seed, "seconds": round(time.perf_counter() - t0, 1), **extra})
        rows.append(r)
        name = extra.get("bundle") or ("float" if bits is None else f"{bits} bits")
        print(f"{name}: classifier-FID {r['fid']:.3f}, KID {r['kid_mean']:.4f} +- "
              f"{r['kid_std']:.4f} ({r['seconds']} s)", flush=True)

    measure(None, model, {})
    graph = export_nir(model.double(), dtype=np.dtype("float64"))
    model.float()
    reference = ExportedNoisePredictor(graph)
    for bits in args.bits:
        predictor = FixedPointNoisePredictor(graph, quantize_graph(graph, bits))
        probe = probe_errors(reference, predictor, config, args.seed)
        measure(bits, lambda x, t: predictor(x, t)[0].to(x.dtype), {"probe": probe})
    for folder in args.bundles:
        bundle_graph, manifest = load_bundle(folder)
        if ModelConfig.from_dict(manifest["model_config"]) != config:
            raise SddpmError(f"bundle {folder} holds another model than {args.checkpoint}")
        fixed = load_fixed_point(folder, bundle_graph, manifest)
        predictor = FixedPointNoisePredictor(bundle_graph, fixed)
        probe = probe_errors(reference, predictor, config, args.seed)
        measure(fixed.weight_bits, lambda x, t: predictor(x, t)[0].to(x.dtype),
                {"probe": probe, "bundle": str(folder)})
    keys = ["bits", "bundle", "fid", "kid_mean", "kid_std", "images", "sampler", "sampler_steps", "seed",
            "seconds"]
    write_csv(out / "fixed_point.csv", rows, keys)
    save_rows(out / "fixed_point.json", rows)
    plot(rows, out / "fixed_point.png")
    print(f"wrote {out}/fixed_point.csv, .json, .png")


if __name__ == "__main__":
    main()
