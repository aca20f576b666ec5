"""Sampler sweep: classifier-FID/KID and energy per generated image, DDPM-1000 vs DDIM-k.

For each checkpoint and sampler, samples ``--n`` images from the same seed and measures
them (``sddpm eval``'s metrics), and profiles ``--profile-n`` images with the same
sampler for the energy per image (45 nm fp32, 'paper' and 'strict'; ``sddpm energy``).
Writes a CSV/JSON table and a quality-against-energy plot (the Pareto front marked).
Resumable: rows already in ``OUT/samplers.json`` for the same checkpoint, sampler,
``--n``, seed, ``--batch`` and ``--profile-n`` are kept and not sampled again, so a
stopped sweep picks up where it was. The JSON keeps rows of other settings too; the CSV
and the plot show this run's.

    python scripts/sweep_samplers.py [CKPT ...] [--samplers ddpm-1000 ddim-10 ddim-20
        ddim-50 ddim-100] [--n 200] [--out runs/sweeps/samplers]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sweep_table import load_rows, save_rows, write_csv

from sddpm.allocator import keep_freed_memory
from sddpm.checkpoint import SHIPPED_CHECKPOINT
from sddpm.errors import SddpmError
from sddpm.evaluation import evaluate_checkpoint
from sddpm.files import save_figure

DEFAULT_SAMPLERS = ["ddpm-1000", "ddim-10", "ddim-20", "ddim-50", "ddim-100"]


def parse_sampler(text: str) -> tuple[str, int]:
    name, _, steps = text.partition("-")
    if name not in ("ddpm", "ddim") or not steps.isdigit() or int(steps) < 1:
        raise SddpmError(f"sampler {text!r}: expected ddpm-1000 or ddim-K")
    return name, int(steps)


def pareto(rows: list) -> list:
    """Rows no other row beats on both energy per image and FID."""
    return [r for r in rows if not any(
        o["energy_paper_mJ_per_image"] <= r["energy_paper_mJ_per_image"] and o["fid"] <= r["fid"]
        and o is not r and (o["energy_paper_mJ_per_image"], o["fid"])
        != (r["energy_paper_mJ_per_image"], r["fid"]) for o in rows)]


def plot(rows: list, path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 4))
    ax = fig.subplots()
    for arch in sorted({r["arch"] for r in rows}):
        mine = sorted((r for r in rows if r["arch"] == arch),
                      key=lambda r: r["energy_paper_mJ_per_image"])
        ax.plot([r["energy_paper_mJ_per_image"] for r in mine], [r["fid"] for r in mine],
                marker="o", label=arch.upper())
        for r in mine:
            ax.annotate(r["label"], (r["energy_paper_mJ_per_image"], r["fid"]), fontsize=7,
                        xytext=(4, 4), textcoords="offset points")
    front = sorted(pareto(rows), key=lambda r: r["energy_paper_mJ_per_image"])
    ax.plot([r["energy_paper_mJ_per_image"] for r in front], [r["fid"] for r in front],
            color="k", ls=":", lw=1, label="Pareto front")
    ax.set_xscale("log")
    ax.set_xlabel("energy per generated image, mJ (45 nm fp32, 'paper')")
    ax.set_ylabel("classifier-FID")
    ax.set_title(f"Quality against energy, {rows[0]['images']} images per point")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def main() -> None:
    from sddpm.hardware.reports import energy_per_image

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="*", default=[str(SHIPPED_CHECKPOINT)])
    parser.add_argument("--samplers", nargs="+", default=DEFAULT_SAMPLERS)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--profile-n", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=100,
                        help="images sampled at once (memory against speed)")
    parser.add_argument("--out", default="runs/sweeps/samplers")
    args = parser.parse_args()
    keep_freed_memory()
    samplers = [parse_sampler(s) for s in dict.fromkeys(args.samplers)]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = out / "samplers.json"
    done = load_rows(table)
    rows = []
    for checkpoint in dict.fromkeys(str(Path(c).resolve()) for c in args.checkpoints):
        for name, steps in samplers:
            label = f"{name}-{steps}"
            # everything the images and the energy depend on (batch i samples seed + i)
            key = (checkpoint, label, args.n, args.seed, args.batch, args.profile_n)
            kept = [r for r in done if (r["checkpoint"], r["label"], r["images"], r["seed"],
                                        r.get("batch"), r.get("profile_n")) == key]
            if kept:
                rows.append(kept[0])
                print(f"{kept[0]['arch']} {label}: kept from {table}", flush=True)
                continue
            r = evaluate_checkpoint(checkpoint, n=args.n, sampler=name, steps=steps,
                                    seed=args.seed, batch=args.batch, progress=True)
            r.update(energy_per_image(checkpoint, sampler=name, steps=steps,
                                      n=args.profile_n, seed=args.seed))
            r.update(label=label, batch=args.batch, profile_n=args.profile_n)
            rows.append(r)
            print(f"{r['arch']} {r['label']}: classifier-FID {r['fid']:.3f}, KID "
                  f"{r['kid_mean']:.4f} +- {r['kid_std']:.4f}, "
                  f"{r['energy_paper_mJ_per_image']:.2f} mJ per image ('paper'), "
                  f"{r['seconds']} s", flush=True)
            save_rows(table, [d for d in done if d not in rows] + rows)
    write_csv(out / "samplers.csv", rows,
              ["arch", "label", "fid", "kid_mean", "kid_std", "energy_paper_mJ_per_image",
               "energy_strict_mJ_per_image", "images", "seed", "seconds", "checkpoint"])
    plot(rows, out / "samplers.png")
    print(f"wrote {out}/samplers.csv, .json, .png")


if __name__ == "__main__":
    main()
