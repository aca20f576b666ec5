"""Time one training step of the Spiking U-Net (T=4) and of its ANN twin, side by side.

Both run the same preset, batch and loss; the steps alternate (ANN, SNN, ANN, ...) so
that load on the machine hits both alike. Prints median seconds per step and the ratio
SNN / ANN; the dense limit is about T. ``--neurons`` adds other IF backends (the
step-by-step snnTorch loop is the naive baseline).

glibc's malloc hands large freed blocks back to the OS, and every new activation then
page-faults its memory in again; like the ``sddpm`` command, the script keeps freed memory
(``sddpm.allocator.keep_freed_memory``) unless ``--system-malloc`` is given or the
environment sets glibc's malloc, and prints which it ran under.

    python benchmarks/train_step.py [--preset fmnist-small] [--repeats 8] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from sddpm.allocator import keep_freed_memory
from sddpm.diffusion import GaussianDiffusion
from sddpm.models import build_model
from sddpm.presets import get_preset


def make_step(preset: str, arch: str, neuron: str, timesteps: int, batch: int):
    config = get_preset(preset).with_timesteps(timesteps)
    torch.manual_seed(0)
    model = build_model(config, arch, neuron).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    diffusion = GaussianDiffusion(config.diffusion_steps)
    x0 = torch.rand(batch, config.image_channels, config.image_size, config.image_size) * 2 - 1
    generator = torch.Generator().manual_seed(0)

    def step() -> float:
        t0 = time.perf_counter()
        loss = diffusion.loss(model, x0, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return time.perf_counter() - t0

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="fmnist-small")
    parser.add_argument("--timesteps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--neurons", nargs="*", default=["snntorch"],
                        help="IF backends to time (snntorch, snntorch-loop, norse)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--system-malloc", action="store_true",
                        help="keep glibc's default malloc settings")
    args = parser.parse_args()
    kept = {} if args.system_malloc else keep_freed_memory()

    runs = {"ann": make_step(args.preset, "ann", "snntorch", args.timesteps, args.batch)}
    for neuron in args.neurons:
        runs[f"snn[{neuron}]"] = make_step(args.preset, "snn", neuron, args.timesteps,
                                           args.batch)
    times = {name: [] for name in runs}
    # blocks of steps per model, the blocks alternating: steps of different models
    # interleaved one by one evict each other's caches and allocator pools
    for _ in range(2):
        for name, step in runs.items():
            step()  # warm-up: allocator, oneDNN primitive caches
            times[name] += [step() for _ in range(max(1, args.repeats // 2))]
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    result = {
        "preset": args.preset, "timesteps": args.timesteps, "batch": args.batch,
        "threads": torch.get_num_threads(), "repeats": 2 * max(1, args.repeats // 2),
        "malloc": "keep-freed" if kept else "system or environment",
        "median_s": medians,
        "ratio_to_ann": {n: medians[n] / medians["ann"] for n in medians if n != "ann"},
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{args.preset}, batch {args.batch}, T={args.timesteps}, "
          f"{result['threads']} threads, {result['malloc']} malloc, "
          f"median of {result['repeats']} steps")
    for name, seconds in medians.items():
        ratio = "" if name == "ann" else f"  {seconds / medians['ann']:.2f}x ANN"
        print(f"  {name:<22} {seconds * 1000:8.1f} ms/step{ratio}")


if __name__ == "__main__":
    main()
