"""The training figures of one or more runs from their ``losses.csv``: a loss curve, the
wall time against steps, and a table of window means paired by step.

Runs are compared where both have run: the table's rows are the windows every run has
completed, so a long run is read against its twin at equal steps while one of them is
still ahead. Wall time is the sum of the per-step seconds each run logged, which leaves
out the pauses between sessions and the checkpoint and sample writes.

    python scripts/plot_training.py NAME=LOSSES.csv [NAME=LOSSES.csv ...]
        [--window 100] [--every 1000] [--out training/loss.png]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from sddpm.errors import SddpmError
from sddpm.files import readable_file, save_figure

HEADER = ["step", "loss", "grad_norm", "seconds"]


def read_losses(path) -> dict[str, np.ndarray]:
    """Columns of a ``sddpm train`` losses.csv; steps must run 1, 2, 3, ... without gaps."""
    path = readable_file(path, "losses file", "give the losses.csv of a `sddpm train` "
                         "output folder")
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or rows[0] != HEADER:
        raise SddpmError(f"{path}: header {rows[0] if rows else 'missing'}, expected "
                         f"{','.join(HEADER)} (a `sddpm train` losses.csv)")
    # a kill during a write can leave a partial last row, as train.py knows too
    body = [r for r in rows[1:] if len(r) == 4 and r[0].isdigit()]
    if not body:
        raise SddpmError(f"{path}: no steps logged yet; train first")
    try:
        table = np.array(body, dtype=np.float64)
    except ValueError:
        raise SddpmError(f"{path}: a row that is not four numbers; is it a losses.csv?") from None
    steps = table[:, 0].astype(np.int64)
    gaps = np.flatnonzero(steps != np.arange(1, len(steps) + 1))
    if len(gaps):
        raise SddpmError(f"{path}: step {steps[gaps[0]]} where {gaps[0] + 1} was expected; "
                         "the file must hold every step from 1 (an unbroken or resumed run)")
    return {"step": steps, "loss": table[:, 1], "grad_norm": table[:, 2],
            "seconds": table[:, 3]}


def window_means(values: np.ndarray, window: int) -> np.ndarray:
    """Means of the complete windows (steps 1-window, window+1-2*window, ...)."""
    n = len(values) // window
    return values[: n * window].reshape(n, window).mean(axis=1)


def summary(name: str, run: dict, window: int) -> dict:
    last = run["loss"][-window:]
    return {"name": name, "steps": int(run["step"][-1]), "hours": float(run["seconds"].sum() / 3600),
            "seconds_per_step_median": float(np.median(run["seconds"])),
            "last_window": [int(run["step"][-1]) - len(last) + 1, int(run["step"][-1])],
            "loss_last_window": float(last.mean())}


def paired_table(runs: dict, window: int, every: int) -> str:
    """Markdown: window means at every ``every`` steps that all runs have completed."""
    means = {name: window_means(run["loss"], window) for name, run in runs.items()}
    done = min(len(m) for m in means.values())
    stride = max(1, every // window)
    picks = [i for i in range(done) if (i + 1) % stride == 0 or i == 0]
    lines = ["| steps | " + " | ".join(runs) + " |", "|---|" + "---|" * len(runs)]
    for i in picks:
        lo, hi = i * window + 1, (i + 1) * window
        lines.append(f"| {lo:,}-{hi:,} | " + " | ".join(f"{means[n][i]:.5f}" for n in runs) + " |")
    return "\n".join(lines)


def plot(runs: dict, window: int, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_time) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, run in runs.items():
        m = window_means(run["loss"], window)
        centres = (np.arange(len(m)) + 0.5) * window
        ax_loss.plot(centres, m, label=name)
        ax_time.plot(run["step"], np.cumsum(run["seconds"]) / 3600, label=name)
    ax_loss.set(yscale="log", xlabel="step (batch of the run's config)",
                ylabel=f"eps-MSE, mean of {window} steps", title="training loss")
    ax_time.set(xlabel="step", ylabel="hours (summed step times)", title="wall time")
    for ax in (ax_loss, ax_time):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    save_figure(fig, out, dpi=110)
    plt.close(fig)
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", metavar="NAME=LOSSES.csv")
    p.add_argument("--window", type=int, default=100, help="steps per mean (default 100)")
    p.add_argument("--every", type=int, default=1000,
                   help="steps between the table's rows (default 1000)")
    p.add_argument("--out", type=Path, default=Path("training/loss.png"))
    args = p.parse_args(argv)
    if args.window < 1 or args.every < 1:
        raise SddpmError("--window and --every must be at least 1 step")
    runs = {}
    for text in args.runs:
        name, sep, path = text.partition("=")
        if not sep or not name or not path:
            raise SddpmError(f"run {text!r}: expected NAME=LOSSES.csv (e.g. "
                             "snn=training/fmnist-small-snn/losses.csv)")
        if name in runs:
            raise SddpmError(f"run name {name!r} given twice; name each run once")
        runs[name] = read_losses(path)
    short = [n for n, r in runs.items() if len(r["loss"]) < args.window]
    if short:
        raise SddpmError(f"{', '.join(short)}: fewer steps than one --window of "
                         f"{args.window}; give a smaller --window")
    for name, run in runs.items():
        s = summary(name, run, args.window)
        print(f"{name}: {s['steps']:,} steps, {s['hours']:.2f} h summed "
              f"(median {s['seconds_per_step_median']:.2f} s per step), mean loss "
              f"{s['loss_last_window']:.5f} over steps {s['last_window'][0]:,}-"
              f"{s['last_window'][1]:,}")
    print(paired_table(runs, args.window, args.every))
    print(f"wrote {plot(runs, args.window, args.out)}")


if __name__ == "__main__":
    import sys

    from sddpm.command_line import run_command

    sys.exit(run_command("plot_training.py", main))
