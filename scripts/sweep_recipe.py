"""Training recipe: short runs of one preset that differ in one option, compared by loss.

Every variant trains from the same seed for the same number of optimizer steps, so at
equal batch size all of them see the same images, diffusion steps and noise in the same
order, and their losses pair step by step: the table gives each variant's mean loss
over the last ``--window`` steps and, against the first variant (the baseline), the mean
paired difference with its standard error and the share of steps it is lower. Variants
of another batch size see other batches; theirs is the unpaired difference. Training
resumes from ``OUT/<variant>/last.pt``, so a stopped sweep picks up where it was; two
processes can share the variants (``--no-table``) and a last run writes the table.

    python scripts/sweep_recipe.py --variants base lr=5e-4 lr=2e-3 grad_clip=0.5 \\
        [--preset fmnist-small] [--arch snn] [--steps 500] [--window 100] \\
        [--out runs/sweeps/recipe]

A variant is ``base`` or comma-separated ``option=value`` pairs over lr, warmup,
batch_size and grad_clip (``--lr`` ... of ``sddpm train``).
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

from sweep_table import save_rows, write_csv

from sddpm.allocator import keep_freed_memory
from sddpm.errors import SddpmError
from sddpm.files import save_figure

# the EMA decay is not among them: it leaves the training loss (of the raw weights) as is
OPTIONS = {"lr": float, "warmup": int, "batch_size": int, "grad_clip": float}


def parse_variant(text: str) -> dict:
    """``lr=5e-4,warmup=100`` -> ``{"lr": 0.0005, "warmup": 100}``; ``base`` -> ``{}``."""
    if text == "base":
        return {}
    out = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or key not in OPTIONS:
            raise SddpmError(f"variant {text!r}: expected base or option=value pairs over "
                             f"{', '.join(OPTIONS)} (e.g. lr=5e-4,warmup=100)")
        try:
            out[key] = OPTIONS[key](value)
        except ValueError:
            raise SddpmError(f"variant {text!r}: {key} needs a number, got {value!r}") from None
    return out


def train(name: str, overrides: dict, args, out: Path) -> None:
    from sddpm.checkpoint import load_checkpoint
    from sddpm.train import TrainConfig, Trainer

    last = out / "last.pt"
    if last.is_file() and load_checkpoint(last)["step"] >= args.steps:
        return
    cfg = TrainConfig(preset=args.preset, arch=args.arch, steps=args.steps, seed=args.seed,
                      ckpt_every=args.ckpt_every, sample_every=args.steps, out=str(out),
                      **overrides)
    Trainer(cfg, resume=last.is_file()).run()


def read_losses(path: Path) -> tuple[list, float]:
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return [float(r["loss"]) for r in rows], sum(float(r["seconds"]) for r in rows)


def compare(base: list, mine: list, window: int, paired: bool) -> dict:
    a, b = base[-window:], mine[-window:]
    if paired:
        d = [y - x for x, y in zip(a, b)]
        mean = sum(d) / len(d)
        se = math.sqrt(sum((v - mean) ** 2 for v in d) / (len(d) - 1) / len(d))
        lower = sum(v < 0 for v in d) / len(d)
    else:
        mean = sum(b) / len(b) - sum(a) / len(a)
        var = lambda v: sum((x - sum(v) / len(v)) ** 2 for x in v) / (len(v) - 1)  # noqa: E731
        se, lower = math.sqrt(var(a) / len(a) + var(b) / len(b)), None
    return {"loss_diff_vs_base": mean, "loss_diff_se": se, "share_of_steps_lower": lower,
            "paired": paired}


def plot(rows: list, curves: dict, path: Path, window: int) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4))
    ax = fig.subplots()
    for r in rows:
        losses = curves[r["variant"]]
        w = 50
        x = list(range(w, len(losses) + 1, w))
        ax.plot(x, [sum(losses[s - w:s]) / w for s in x], label=r["variant"])
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("eps-MSE (50-step mean)")
    ax.axvspan(len(losses) - window, len(losses), color="0.9", zorder=0)
    ax.set_title(f"Training recipe, {rows[0]['preset']} {rows[0]['arch'].upper()} "
                 f"(shaded: the compared window)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def main() -> None:
    from sddpm.presets import get_preset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["base"],
                        help="the first is the baseline")
    parser.add_argument("--preset", default="fmnist-small")
    parser.add_argument("--arch", default="snn")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--window", type=int, default=100, help="last steps compared")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ckpt-every", type=int, default=100)
    parser.add_argument("--no-table", action="store_true", help="train only")
    parser.add_argument("--out", default="runs/sweeps/recipe")
    args = parser.parse_args()
    if not 2 <= args.window <= args.steps:
        raise SddpmError(f"--window {args.window}: needs 2..--steps ({args.steps}) steps")
    keep_freed_memory()
    preset = get_preset(args.preset)
    variants = {v: parse_variant(v) for v in dict.fromkeys(args.variants)}
    out = Path(args.out)
    for name, overrides in variants.items():
        train(name, overrides, args, out / name.replace(",", "_"))
    if args.no_table:
        return
    curves, rows = {}, []
    base_name = next(iter(variants))
    base_batch = variants[base_name].get("batch_size", preset.batch_size)
    for name, overrides in variants.items():
        losses, seconds = read_losses(out / name.replace(",", "_") / "losses.csv")
        if len(losses) < args.steps:
            raise SddpmError(f"{name}: {len(losses)} of {args.steps} steps logged; rerun "
                             "without --no-table to finish its training")
        curves[name] = losses[:args.steps]
        batch = overrides.get("batch_size", preset.batch_size)
        row = {"variant": name, "preset": args.preset, "arch": args.arch,
               "steps": args.steps, "batch_size": batch, "images_seen": batch * args.steps,
               "lr": overrides.get("lr", preset.lr), **overrides,
               "loss_window_mean": sum(curves[name][-args.window:]) / args.window,
               "window": args.window, "seconds": round(seconds, 1)}
        if name != base_name:
            row.update(compare(curves[base_name], curves[name], args.window,
                               paired=batch == base_batch))
        rows.append(row)
        diff = (f", {row['loss_diff_vs_base']:+.5f} +- {row['loss_diff_se']:.5f} vs "
                f"{base_name}" if name != base_name else "")
        print(f"{name}: loss {row['loss_window_mean']:.5f} over steps "
              f"{args.steps - args.window + 1}-{args.steps}{diff} ({row['seconds']} s)")
    save_rows(out / "recipe.json", rows)
    write_csv(out / "recipe.csv", rows, ["variant", "batch_size", "lr", "warmup", "grad_clip",
                                         "steps", "images_seen",
                                         "loss_window_mean", "window", "loss_diff_vs_base",
                                         "loss_diff_se", "share_of_steps_lower", "paired",
                                         "seconds"])
    plot(rows, curves, out / "recipe.png", args.window)
    print(f"wrote {out}/recipe.csv, .json and .png")


if __name__ == "__main__":
    import sys

    from sddpm.command_line import run_command

    sys.exit(run_command("sweep_recipe.py", main))
