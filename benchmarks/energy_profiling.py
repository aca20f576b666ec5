"""What spike-rate profiling costs: a sampling run with and without the profiler's hooks.

Samples ``--n`` images with DDIM-``--steps`` from a checkpoint (the shipped model by
default), alternating plain and profiled runs so that machine load hits both alike,
and prints median seconds per run and the ratio profiled / plain.

    python benchmarks/energy_profiling.py [CKPT] [--n 4] [--steps 10] [--repeats 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from sddpm.allocator import keep_freed_memory
from sddpm.checkpoint import SHIPPED_CHECKPOINT
from sddpm.diffusion import GaussianDiffusion
from sddpm.hardware.profiler import ActivityProfiler, model_timesteps
from sddpm.presets import ModelConfig
from sddpm.sampling import model_from_checkpoint, sample_images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", default=str(SHIPPED_CHECKPOINT))
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    keep_freed_memory()  # as the sddpm commands do

    model, payload = model_from_checkpoint(args.checkpoint)
    config = ModelConfig.from_dict(payload["model_config"])
    diffusion = GaussianDiffusion(config.diffusion_steps)

    def run(profiled: bool) -> float:
        t0 = time.perf_counter()
        if profiled:
            with ActivityProfiler(model, model_timesteps(model) or 1) as profiler:
                sample_images(model, diffusion, config, n=args.n, sampler="ddim",
                              steps=args.steps, batch=args.n, progress=False)
            profiler.profile()
        else:
            sample_images(model, diffusion, config, n=args.n, sampler="ddim",
                          steps=args.steps, batch=args.n, progress=False)
        return time.perf_counter() - t0

    run(False), run(True)  # warm-up
    times = {"plain": [], "profiled": []}
    for _ in range(args.repeats):
        times["plain"].append(run(False))
        times["profiled"].append(run(True))
    result = {"checkpoint": args.checkpoint, "images": args.n, "ddim_steps": args.steps,
              "threads": torch.get_num_threads(),
              **{f"{k}_s": statistics.median(v) for k, v in times.items()}}
    result["ratio"] = result["profiled_s"] / result["plain_s"]
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"DDIM-{args.steps}, {args.n} images, {payload['arch']} {config.name}: plain "
              f"{result['plain_s']:.2f} s, profiled {result['profiled_s']:.2f} s, "
              f"ratio {result['ratio']:.2f}x (median of {args.repeats})")


if __name__ == "__main__":
    main()
