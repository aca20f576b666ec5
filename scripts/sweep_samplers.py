"""Sampler sweep: classifier-FID/KID with bootstrap intervals and energy per image.

For each checkpoint and sampler row (``ddpm-1000``, ``ddim-K``, ``dpm-solver++-K``,
``unipc-K``... any name ``sddpm sample --sampler`` takes, then its steps), samples images
from the same seed (so every row starts from the same noise), keeps them under
``OUT/images/``, measures them and profiles ``--profile-n`` images with the same sampler
for the energy per image (45 nm fp32, 'paper' and 'strict'; the sampler's real number
of network calls). A row may carry threshold guidance after an ``@``:
``dpm-solver++-10@0.998`` or ``dpm-solver++-10@up.json`` (a per-population map, as
``--threshold`` takes; spiking models only).

Resumable and extendable: images are kept batch by batch (batch ``i`` is seed + i), so a
stopped run, or a later one with a larger ``--n``, samples only the batches missing;
energies and metrics are cached. ``--sample-only`` samples and stops (run DDPM-1000
that way in the background beside the rest); the table run measures what is there.

FID depends on the number of images (it is biased upward at small n), so the rows are
compared at one ``--eval-n``: by default the fewest images any row of this run has.
KID is unbiased; it is also given at each row's full count. Intervals: 95% normal
bootstrap (``sddpm.fid_kid.bootstrap_intervals``).

    python scripts/sweep_samplers.py [CKPT ...] [--samplers ddpm-1000 ddim-10 ...]
        [--n 200] [--batch 50] [--out runs/sweeps/samplers]
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
from sweep_table import load_rows, save_rows, write_csv
from tqdm.auto import tqdm

from sddpm.allocator import keep_freed_memory
from sddpm.checkpoint import SHIPPED_CHECKPOINT
from sddpm.errors import SddpmError
from sddpm.files import atomic_path, save_figure

DEFAULT_SAMPLERS = ["ddpm-1000", "ddim-10", "ddim-20", "ddim-50", "ddim-100",
                    "dpm-solver++-5", "dpm-solver++-10", "dpm-solver++-20", "unipc-10"]


def parse_row(text: str) -> dict:
    """``SAMPLER-STEPS[@THRESHOLD]`` -> its parts (one-line error if malformed)."""
    from sddpm.diffusion import SAMPLERS

    spec, _, threshold = text.partition("@")
    name, _, steps = spec.rpartition("-")
    if name not in SAMPLERS or not steps.isdigit() or int(steps) < 1:
        raise SddpmError(f"sampler row {text!r}: expected SAMPLER-STEPS[@THRESHOLD] with "
                         f"SAMPLER one of {', '.join(SAMPLERS)} (e.g. dpm-solver++-10)")
    if name == "ddpm" and int(steps) != 1000:
        raise SddpmError(f"{text!r}: our DDPM runs all 1000 steps; use diffusers-ddpm-{steps}")
    tag = Path(threshold).stem if threshold.endswith(".json") else re.sub(
        r"[^A-Za-z0-9.=_+-]+", "", threshold.replace(":", "="))
    label = spec if not threshold else f"{spec}@{tag}"
    return {"label": label, "sampler": name, "steps": int(steps),
            "threshold_spec": threshold or None}


class RowImages:
    """One row's images on disk, batch by batch: ``seed{s}-b{B}-{i:04d}.npy``."""

    def __init__(self, folder: Path, seed: int, batch: int):
        self.folder, self.seed, self.batch = folder, seed, batch

    def path(self, i: int) -> Path:
        return self.folder / f"seed{self.seed}-b{self.batch}-{i:04d}.npy"

    def count(self) -> int:
        i = 0
        while self.path(i).is_file():
            i += 1
        return i * self.batch

    def load(self, n: int):
        import torch

        chunks = [np.load(self.path(i)) for i in range(-(-n // self.batch))]
        return torch.from_numpy(np.concatenate(chunks)[:n])

    def save(self, i: int, images) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path(i)) as tmp, open(tmp, "wb") as f:
            np.save(f, images.numpy().astype(np.float32))


def sample_row(checkpoint: str, row: dict, images: RowImages, n: int, threshold,
               reverse: bool = False) -> None:
    """Sample the batches of ``row`` that ``images`` lacks, up to ``n`` images.

    A batch already on disk is skipped when its turn comes, so two processes may share a
    row, one of them ``reverse`` (from the last batch backwards), until they meet (where
    at worst one batch is made twice, identically).
    """
    from sddpm.diffusion import GaussianDiffusion
    from sddpm.presets import ModelConfig
    from sddpm.sampling import model_from_checkpoint, sample_images

    wanted = range(images.count() // images.batch, -(-n // images.batch))
    batches = [i for i in (reversed(wanted) if reverse else wanted)
               if not images.path(i).is_file()]
    if not batches:
        return
    model, payload = model_from_checkpoint(checkpoint, threshold=threshold)
    config = ModelConfig.from_dict(payload["model_config"])
    diffusion = GaussianDiffusion(config.diffusion_steps)
    for i in tqdm(batches, desc=f"{payload['arch']} {row['label']}: batches of "
                                f"{images.batch}"):
        if images.path(i).is_file():
            continue  # the other process made it meanwhile
        batch = sample_images(model, diffusion, config, n=images.batch,
                              sampler=row["sampler"], steps=row["steps"],
                              seed=images.seed + i, batch=images.batch, progress=False)
        images.save(i, batch)


def pareto(rows: list, quality: str = "fid") -> list:
    """Rows no other row of the same network beats on both energy per image and quality."""
    def beats(o, r):
        return (o["arch"] == r["arch"] and o is not r
                and o["energy_paper_mJ_per_image"] <= r["energy_paper_mJ_per_image"]
                and o[quality] <= r[quality]
                and (o["energy_paper_mJ_per_image"], o[quality])
                != (r["energy_paper_mJ_per_image"], r[quality]))
    return [r for r in rows if not any(beats(o, r) for o in rows)]


def add_paired_differences(rows: list, measured: list) -> None:
    """Each row's FID and KID minus its network's DDPM-1000 row's, with intervals from
    paired bootstrap resamples (same image indices; image i of every row starts from
    the same noise)."""
    from sddpm.fid_kid import paired_difference

    for arch in {r["arch"] for r in rows}:
        mine = [(r, m) for r, m in zip(rows, measured) if r["arch"] == arch]
        base = next((m for r, m in mine if r["label"] == "ddpm-1000"), None)
        if base is None:
            continue
        for r, m in mine:
            for metric in ("fid", "kid"):
                d = paired_difference(m, base, metric)
                r.update({f"{metric}_diff_vs_ddpm": d["diff"],
                          f"{metric}_diff_ci_low": d["ci_low"],
                          f"{metric}_diff_ci_high": d["ci_high"]})


def frontier_summary(rows: list) -> list:
    """Per network: the cheapest row whose FID interval overlaps DDPM-1000's, and the
    cheapest whose paired FID difference from DDPM-1000 is not measurably above 0."""
    out = []
    for arch in sorted({r["arch"] for r in rows}):
        mine = [r for r in rows if r["arch"] == arch]
        base = [r for r in mine if r["label"] == "ddpm-1000"]
        if not base:
            continue
        base = base[0]
        overlapping = [r for r in mine if r is not base and r["fid_ci_low"] <= base["fid_ci_high"]
                       and r["fid_ci_high"] >= base["fid_ci_low"]]
        if not overlapping:
            out.append({"arch": arch, "row": None, "images": base["images"]})
            continue
        best = min(overlapping, key=lambda r: r["network_calls"])
        paired = [r for r in mine if r is not base and r.get("fid_diff_ci_low", 1) <= 0]
        cheapest = min(paired, key=lambda r: r["network_calls"]) if paired else None
        out.append({"arch": arch, "row": best["label"], "network_calls": best["network_calls"],
                    "paired_row": cheapest and cheapest["label"],
                    "paired_fid_diff": cheapest and [cheapest["fid_diff_ci_low"],
                                                      cheapest["fid_diff_ci_high"]],
                    "paired_energy_ratio_paper": cheapest and (
                        base["energy_paper_mJ_per_image"]
                        / cheapest["energy_paper_mJ_per_image"]),
                    "images": base["images"], "fid": best["fid"],
                    "fid_interval": [best["fid_ci_low"], best["fid_ci_high"]],
                    "ddpm_fid": base["fid"],
                    "ddpm_fid_interval": [base["fid_ci_low"], base["fid_ci_high"]],
                    "energy_ratio_paper": base["energy_paper_mJ_per_image"]
                    / best["energy_paper_mJ_per_image"],
                    "energy_ratio_strict": base["energy_strict_mJ_per_image"]
                    / best["energy_strict_mJ_per_image"]})
    return out


def markdown_table(rows: list) -> str:
    """The frontier as a Markdown table, per network by energy (for README and notes)."""
    lines = ["| network | row | network calls | classifier-FID (95% interval) | "
             "FID minus DDPM-1000's (paired 95% interval) | "
             "classifier-KID (95% interval) | precision | recall | "
             "mJ per image ('paper' / 'strict') | energy vs DDPM-1000 |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    def paired(r):
        if "fid_diff_vs_ddpm" not in r or r["label"] == "ddpm-1000":
            return ""
        return (f"{r['fid_diff_vs_ddpm']:+.2f} [{r['fid_diff_ci_low']:+.2f}, "
                f"{r['fid_diff_ci_high']:+.2f}]")

    for arch in sorted({r["arch"] for r in rows}, reverse=True):
        mine = sorted((r for r in rows if r["arch"] == arch),
                      key=lambda r: -r["energy_paper_mJ_per_image"])
        base = next((r for r in mine if r["label"] == "ddpm-1000"), None)
        for r in mine:
            ratio = (f"{base['energy_paper_mJ_per_image'] / r['energy_paper_mJ_per_image']:.1f}x"
                     " less" if base is not None and r is not base else "")
            lines.append(
                f"| {arch.upper()} | {r['label']} | {r['network_calls']} | {r['fid']:.2f} "
                f"[{r['fid_ci_low']:.2f}, {r['fid_ci_high']:.2f}] | {paired(r)} | "
                f"{r['kid_mean']:.3f} [{r['kid_ci_low']:.3f}, "
                f"{r['kid_ci_high']:.3f}] | {r['precision']:.3f} | {r['recall']:.3f} | "
                f"{r['energy_paper_mJ_per_image']:.2f} / {r['energy_strict_mJ_per_image']:.2f} "
                f"| {ratio} |")
    return "\n".join(lines) + "\n"


def _label_points(ax, rows: list, dpi: float, gap_px: float = 9.0) -> None:
    """Each point's label beside it; the labels of one network's rows of one cost (the
    10-call samplers) on the left, pushed apart downwards, with a line to their points."""
    ax.autoscale_view()
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["arch"], r["network_calls"]), []).append(r)
    for group in groups.values():
        last = None
        for r in sorted(group, key=lambda r: -r["fid"]):  # top of the plot first
            xy = (r["energy_paper_mJ_per_image"], r["fid"])
            y = ax.transData.transform(xy)[1]
            label_y = y if last is None else min(y, last - gap_px)
            last = label_y
            shift = (label_y - y) * 72 / dpi
            # a crowded cost's labels go to the left, clear of the next cost's points
            left = len(group) > 2
            ax.annotate(r["label"], xy, fontsize=6, xytext=(-6 if left else 6, 2 + shift),
                        textcoords="offset points", ha="right" if left else "left",
                        arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "0.5"}
                        if shift < -1 else None)


def plot(rows: list, path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.5))
    ax = fig.subplots()
    front = {id(r) for r in pareto(rows)}
    for arch, colour in zip(sorted({r["arch"] for r in rows}), ("C0", "C1", "C2")):
        mine = sorted((r for r in rows if r["arch"] == arch),
                      key=lambda r: r["energy_paper_mJ_per_image"])
        x = [r["energy_paper_mJ_per_image"] for r in mine]
        y = [r["fid"] for r in mine]
        err = [[r["fid"] - r["fid_ci_low"] for r in mine],
               [r["fid_ci_high"] - r["fid"] for r in mine]]
        ax.errorbar(x, y, yerr=err, fmt="none", ecolor=colour, alpha=0.5, capsize=2)
        ax.scatter(x, y, color=colour, label=f"{arch.upper()} (filled: Pareto front)",
                   facecolors=[colour if id(r) in front else "none" for r in mine])
        on = [r for r in mine if id(r) in front]
        ax.plot([r["energy_paper_mJ_per_image"] for r in on], [r["fid"] for r in on],
                color=colour, ls=":", lw=1)
    ax.set_xscale("log")
    cheapest = min(r["energy_paper_mJ_per_image"] for r in rows)
    ax.set_xlim(left=cheapest / 4)  # room for the left-hand labels
    _label_points(ax, rows, fig.dpi)
    ax.set_xlabel("energy per generated image, mJ (45 nm fp32, 'paper')")
    ax.set_ylabel("classifier-FID (95% bootstrap interval)")
    ax.set_title(f"Quality against energy, {rows[0]['images']} images per point")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def main() -> None:
    from sddpm.evaluation import DEFAULT_CLASSIFIER, evaluate_images
    from sddpm.hardware.reports import energy_per_image
    from sddpm.neurons import parse_threshold

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="*", default=[str(SHIPPED_CHECKPOINT)])
    parser.add_argument("--samplers", nargs="+", default=DEFAULT_SAMPLERS,
                        metavar="SAMPLER-STEPS[@THRESHOLD]")
    parser.add_argument("--n", type=int, default=200, help="images per row")
    parser.add_argument("--eval-n", type=int, default=None,
                        help="images every row is measured on (default: the fewest any "
                             "row of this run has)")
    parser.add_argument("--bootstrap", type=int, default=500, help="bootstrap resamples")
    parser.add_argument("--profile-n", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=50,
                        help="images sampled at once (memory against speed)")
    parser.add_argument("--sample-only", action="store_true",
                        help="sample the missing batches and stop (no energy, no table)")
    parser.add_argument("--reverse", action="store_true",
                        help="sample the missing batches last first: a second process "
                             "with --sample-only --reverse shares a long row's batches")
    parser.add_argument("--out", default="runs/sweeps/samplers")
    args = parser.parse_args()
    keep_freed_memory()
    specs = [parse_row(s) for s in dict.fromkeys(args.samplers)]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = []
    for checkpoint in dict.fromkeys(str(Path(c).resolve()) for c in args.checkpoints):
        arch = _arch(checkpoint)
        for row in specs:
            if row["threshold_spec"] and arch != "snn":
                continue  # threshold guidance moves spiking thresholds only
            threshold = parse_threshold(row["threshold_spec"]) if row["threshold_spec"] else None
            folder = out / "images" / f"{arch}-{Path(checkpoint).stem}" / row["label"]
            jobs.append((checkpoint, arch, row, threshold,
                         RowImages(folder, args.seed, args.batch)))
    for checkpoint, arch, row, threshold, images in jobs:
        sample_row(checkpoint, row, images, args.n, threshold, reverse=args.reverse)
    if args.sample_only:
        print(f"sampled {args.n} images per row into {out / 'images'}")
        return

    energy_cache = out / "energy.json"
    metric_cache = out / "metrics.json"
    energies, metrics = load_rows(energy_cache) or {}, load_rows(metric_cache) or {}
    counts = [images.count() for *_, images in jobs]
    eval_n = args.eval_n or min(counts)
    if eval_n < 4 or eval_n > min(counts):  # precision/recall need 4 (3-NN balls)
        raise SddpmError(f"--eval-n {eval_n}: every row needs that many images (the fewest "
                         f"has {min(counts)}); rerun with --n {eval_n} or lower --eval-n")
    rows, resamples = [], {}
    for (checkpoint, arch, row, threshold, images), have in zip(jobs, counts):
        key = f"{checkpoint}|{row['label']}|{args.seed}|{args.profile_n}"
        if key not in energies:
            energies[key] = energy_per_image(checkpoint, sampler=row["sampler"],
                                             steps=row["steps"], n=args.profile_n,
                                             seed=args.seed, threshold=threshold)
            save_rows(energy_cache, energies)
        measured = {}
        for n, tag in ((eval_n, ""), (have, "_full")):
            mkey = f"{checkpoint}|{row['label']}|{args.seed}|{args.batch}|{n}|{args.bootstrap}"
            if "fid_resamples" not in metrics.get(mkey, {}):  # absent, or from before
                metrics[mkey] = evaluate_images(images.load(n), DEFAULT_CLASSIFIER,
                                                bootstrap=args.bootstrap, keep_resamples=True)
                save_rows(metric_cache, metrics)
            m = metrics[mkey]
            measured.update({f"{k}{tag}": m[k] for k in
                             ("fid", "fid_ci_low", "fid_ci_high", "kid_mean", "kid_ci_low",
                              "kid_ci_high", "precision", "recall")})
        resamples[id(row), checkpoint] = metrics[
            f"{checkpoint}|{row['label']}|{args.seed}|{args.batch}|{eval_n}|{args.bootstrap}"]
        r = {"checkpoint": checkpoint, "arch": arch, "label": row["label"],
             "sampler": row["sampler"], "sampler_steps": row["steps"],
             "threshold": row["threshold_spec"], "images": eval_n, "images_full": have,
             "seed": args.seed, "batch": args.batch, "bootstrap": args.bootstrap,
             "profile_n": args.profile_n, **energies[key], **measured}
        rows.append(r)
        print(f"{arch} {row['label']}: {r['network_calls']} calls, classifier-FID "
              f"{r['fid']:.2f} [{r['fid_ci_low']:.2f}, {r['fid_ci_high']:.2f}] at {eval_n} "
              f"images, KID {r['kid_mean_full']:.3f} at {have}, "
              f"{r['energy_paper_mJ_per_image']:.2f} mJ per image ('paper')", flush=True)
    add_paired_differences(rows, [resamples[id(row), c] for c, _, row, *_ in jobs])
    save_rows(out / "samplers.json", rows)
    write_csv(out / "samplers.csv", rows,
              ["arch", "label", "network_calls", "images", "fid", "fid_ci_low", "fid_ci_high",
               "fid_diff_vs_ddpm", "fid_diff_ci_low", "fid_diff_ci_high", "kid_diff_vs_ddpm",
               "kid_diff_ci_low", "kid_diff_ci_high",
               "kid_mean", "kid_ci_low", "kid_ci_high", "precision", "recall", "images_full",
               "fid_full",
               "fid_ci_low_full", "fid_ci_high_full", "kid_mean_full", "kid_ci_low_full",
               "kid_ci_high_full", "energy_paper_mJ_per_image", "energy_strict_mJ_per_image",
               "threshold", "seed", "checkpoint"])
    with atomic_path(out / "samplers.md") as tmp:
        Path(tmp).write_text(markdown_table(rows))
    summary = frontier_summary(rows)
    save_rows(out / "frontier.json", summary)
    for s in summary:
        if s["row"] is None:
            print(f"{s['arch']}: no row's FID interval overlaps DDPM-1000's at {s['images']} "
                  "images")
        else:
            print(f"{s['arch']}: fewest network calls whose FID interval overlaps DDPM-1000's "
                  f"({s['images']} images): {s['row']}, {s['energy_ratio_paper']:.1f}x less "
                  f"energy per image ('paper'), {s['energy_ratio_strict']:.1f}x ('strict')")
            if s["paired_row"]:
                print(f"{s['arch']}: fewest network calls not measurably worse than DDPM-1000 "
                      f"(paired FID difference [{s['paired_fid_diff'][0]:.2f}, "
                      f"{s['paired_fid_diff'][1]:.2f}]): {s['paired_row']}, "
                      f"{s['paired_energy_ratio_paper']:.1f}x less energy per image")
    plot(rows, out / "samplers.png")
    print(f"wrote {out}/samplers.csv, .json, .md, .png and frontier.json")


def _arch(checkpoint: str) -> str:
    from sddpm.checkpoint import load_checkpoint

    return load_checkpoint(checkpoint, verify=False)["arch"]


if __name__ == "__main__":
    import sys

    from sddpm.command_line import run_command

    sys.exit(run_command("sweep_samplers.py", main))
