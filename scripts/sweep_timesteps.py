"""Spiking timesteps T: models trained at each T with the same budget, then compared.

For each T, trains the preset's spiking model with the same seed, batch and number of
optimizer steps (so the same images in the same order), then measures classifier-FID/
KID of ``--n`` DDIM samples and the energy per generated image ('paper' and 'strict',
45 nm fp32) from a spike-rate profile. Training resumes from ``OUT/T<T>/last.pt`` and
finished rows are kept (``OUT/timesteps.json``), so a stopped sweep picks up where it was.
Writes CSV/JSON and a plot: the loss curves, and quality against energy.

    python scripts/sweep_timesteps.py [--timesteps 4 8] [--train-steps 500] [--n 200]
        [--sampler-steps 20] [--out runs/sweeps/timesteps]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from sweep_table import load_rows, save_rows, write_csv

from sddpm.allocator import keep_freed_memory
from sddpm.files import save_figure


def train(t: int, args, out: Path) -> Path:
    from sddpm.checkpoint import load_checkpoint
    from sddpm.errors import SddpmError
    from sddpm.train import TrainConfig, Trainer

    last = out / "last.pt"
    if last.is_file():
        payload = load_checkpoint(last)
        saved = payload["train_config"]
        if (saved["preset"], saved["seed"], payload["step"] <= args.train_steps) != (
                args.preset, args.seed, True):
            raise SddpmError(f"{last} was trained with preset {saved['preset']}, seed "
                             f"{saved['seed']}, {payload['step']} steps; it does not fit "
                             f"this sweep: choose another --out")
        if payload["step"] == args.train_steps:
            return last
    cfg = TrainConfig(preset=args.preset, arch="snn", timesteps=t, steps=args.train_steps,
                      seed=args.seed, ckpt_every=args.ckpt_every,
                      sample_every=args.train_steps, out=str(out))
    Trainer(cfg, resume=last.is_file()).run()
    return last


def loss_curve(path, window: int = 50) -> tuple[list, list]:
    with open(path) as f:
        losses = [float(r["loss"]) for r in csv.DictReader(f)]
    starts = range(0, len(losses) - window + 1, window)
    return [s + window for s in starts], [sum(losses[s:s + window]) / window for s in starts]


def plot(rows: list, out: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.5))
    curves, front = fig.subplots(1, 2)
    for r in rows:
        x, y = loss_curve(out / f"T{r['timesteps']}" / "losses.csv")
        curves.plot(x, y, label=f"T={r['timesteps']}")
        front.errorbar(r["energy_paper_mJ_per_image"], r["fid"], fmt="o",
                       label=f"T={r['timesteps']}")
    curves.set_yscale("log")
    curves.set_xlabel("optimizer step")
    curves.set_ylabel("eps-MSE (50-step mean)")
    curves.legend()
    front.set_xlabel("energy per generated image, mJ (45 nm fp32, 'paper')")
    front.set_ylabel("classifier-FID")
    front.legend()
    fig.suptitle(f"Spiking timesteps, {rows[0]['trained_steps']} training steps each; "
                 f"{rows[0]['images']} images, DDIM-{rows[0]['sampler_steps']}")
    fig.tight_layout()
    save_figure(fig, out / "timesteps.png", dpi=110)


def main() -> None:
    from sddpm.evaluation import evaluate_checkpoint
    from sddpm.hardware.reports import energy_per_image

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timesteps", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--preset", default="fmnist-small")
    parser.add_argument("--train-steps", type=int, default=500)
    parser.add_argument("--ckpt-every", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--sampler-steps", type=int, default=20)
    parser.add_argument("--profile-n", type=int, default=4)
    parser.add_argument("--out", default="runs/sweeps/timesteps")
    args = parser.parse_args()
    keep_freed_memory()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = out / "timesteps.json"
    done, rows = load_rows(table), []
    for t in args.timesteps:
        key = (args.preset, t, args.train_steps, args.n, args.sampler_steps, args.seed)
        kept = [r for r in done if (r["preset"], r["timesteps"], r["trained_steps"],
                                    r["images"], r["sampler_steps"], r["seed"]) == key]
        if kept:
            rows.append(kept[0])
            print(f"T={t}: kept from {table}", flush=True)
            continue
        checkpoint = train(t, args, out / f"T{t}")
        r = evaluate_checkpoint(checkpoint, n=args.n, steps=args.sampler_steps, seed=args.seed)
        r.update(energy_per_image(checkpoint, steps=args.sampler_steps, n=args.profile_n,
                                  seed=args.seed))
        with open(out / f"T{t}" / "losses.csv") as f:
            steps = list(csv.DictReader(f))
        r["timesteps"] = t
        r["train_seconds"] = round(sum(float(s["seconds"]) for s in steps), 1)
        r["final_loss_100"] = sum(float(s["loss"]) for s in steps[-100:]) / min(100, len(steps))
        rows.append(r)
        print(f"T={t}: classifier-FID {r['fid']:.3f}, KID {r['kid_mean']:.4f} +- "
              f"{r['kid_std']:.4f}, loss (last 100 steps) {r['final_loss_100']:.4f}, "
              f"{r['energy_paper_mJ_per_image']:.2f} mJ per image ('paper'), trained in "
              f"{r['train_seconds']} s", flush=True)
        save_rows(table, [d for d in done if d not in rows] + rows)
    write_csv(out / "timesteps.csv", rows,
              ["timesteps", "trained_steps", "final_loss_100", "fid", "kid_mean", "kid_std",
               "energy_paper_mJ_per_image", "energy_strict_mJ_per_image", "images",
               "sampler_steps", "seed", "train_seconds", "seconds", "checkpoint"])
    plot(rows, out)
    print(f"wrote {out}/timesteps.csv, .json, .png")


if __name__ == "__main__":
    main()
