"""Threshold guidance sweep: classifier-FID/KID of a spiking checkpoint per threshold.

The paper (Table 2) found slightly lower thresholds (0.997-0.999) a little better. Every
threshold samples from the same seed, so the runs differ by the threshold alone.

    python scripts/sweep_threshold.py CKPT [--thresholds 0.995 0.998 1.0 1.002 1.005]
        [--n 200] [--steps 20] [--out runs/sweeps/threshold]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sweep_table import save_rows, write_csv

from sddpm.allocator import keep_freed_memory
from sddpm.checkpoint import SHIPPED_CHECKPOINT
from sddpm.evaluation import evaluate_checkpoint
from sddpm.files import save_figure


def plot(rows, path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 3))
    fid, kid = fig.subplots(1, 2)
    x = [r["threshold"] for r in rows]
    fid.plot(x, [r["fid"] for r in rows], marker="o")
    fid.set_xlabel("threshold")
    fid.set_ylabel("classifier-FID")
    kid.errorbar(x, [r["kid_mean"] for r in rows], yerr=[r["kid_std"] for r in rows],
                 marker="o", capsize=3)
    kid.set_xlabel("threshold")
    kid.set_ylabel("classifier-KID")
    fig.suptitle(f"Threshold guidance, {rows[0]['images']} images, "
                 f"{rows[0]['sampler']}-{rows[0]['sampler_steps']}")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", default=str(SHIPPED_CHECKPOINT))
    parser.add_argument("--thresholds", type=float, nargs="+",
                        default=[0.995, 0.998, 1.0, 1.002, 1.005])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/sweeps/threshold")
    args = parser.parse_args()
    keep_freed_memory()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for threshold in args.thresholds:
        r = evaluate_checkpoint(args.checkpoint, n=args.n, steps=args.steps,
                                threshold=threshold, seed=args.seed, progress=False)
        rows.append(r)
        print(f"threshold {threshold:.3f}: classifier-FID {r['fid']:.3f}, KID "
              f"{r['kid_mean']:.4f} +- {r['kid_std']:.4f} ({r['seconds']} s)", flush=True)
    keys = ["threshold", "fid", "kid_mean", "kid_std", "images", "sampler", "sampler_steps",
            "seed", "seconds"]
    write_csv(out / "threshold_sweep.csv", rows, keys)
    save_rows(out / "threshold_sweep.json", rows)
    plot(rows, out / "threshold_sweep.png")
    print(f"wrote {out}/threshold_sweep.csv, .json, .png")


if __name__ == "__main__":
    main()
