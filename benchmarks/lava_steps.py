"""Lava wall time per Lava step and per denoising step, single images against pipelined.

Builds the Lava network of a checkpoint (floating point, no spike taps), then in one
run: a forward pass of one image (T + latency steps, rounded up to a multiple of T) and
a pipelined batch of K images ((K-1) T more steps). Prints seconds per Lava step, per
denoising step of one image, and per image when pipelined, and the ratio.

    python benchmarks/lava_steps.py [CKPT] [--images 4] [--repeats 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from export.executor import HostSide
from export.nir_to_lava import LavaNetwork
from export.torch_to_nir import export_nir
from sddpm.checkpoint import SHIPPED_CHECKPOINT
from sddpm.sampling import model_from_checkpoint
from simulations.lava_runner import LavaSession


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", default=str(SHIPPED_CHECKPOINT))
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    model, _ = model_from_checkpoint(args.checkpoint)
    config = model.config
    graph = export_nir(model.double())
    host = HostSide(graph)
    x = torch.randn(args.images, config.image_channels, config.image_size, config.image_size,
                    generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    feeds = host.inputs(x, torch.full((args.images,), 500))
    per_image = [{k: v[b].numpy() for k, v in feeds.items()} for b in range(args.images)]
    network = LavaNetwork(graph, config.timesteps)
    session = LavaSession(network)
    single, batch, single_steps, batch_steps = [], [], 0, 0
    try:
        for _ in range(args.repeats):
            for images, times in ((per_image[:1], single), (per_image, batch)):
                before, t0 = session.lava_steps, time.perf_counter()
                session.forward(images)
                times.append(time.perf_counter() - t0)
                steps = session.lava_steps - before
                single_steps, batch_steps = ((steps, batch_steps) if len(images) == 1
                                             else (single_steps, steps))
    finally:
        session.stop()
    s_single, s_batch = statistics.median(single), statistics.median(batch)
    result = {
        "checkpoint": args.checkpoint, "preset": config.name, "timesteps": config.timesteps,
        "lava_processes": len(network.processes), "latency_steps": network.schedule.latency(),
        "compile_s": session.compile_seconds,
        "steps_single": single_steps, "steps_batch": batch_steps, "images": args.images,
        "s_per_lava_step": s_single / single_steps,
        "s_per_denoising_step_single": s_single,
        "s_per_image_pipelined": s_batch / args.images,
        "pipelining_speedup": s_single / (s_batch / args.images),
        "steps_ratio": single_steps / (batch_steps / args.images),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{config.name} T={config.timesteps}: {result['lava_processes']} Lava processes, "
          f"latency {result['latency_steps']} steps, compile {result['compile_s']:.1f} s")
    print(f"  one image:  {single_steps} Lava steps, {s_single:.1f} s per denoising step, "
          f"{result['s_per_lava_step']:.3f} s per Lava step")
    print(f"  {args.images} images pipelined: {batch_steps} steps, "
          f"{result['s_per_image_pipelined']:.1f} s per image per denoising step")
    print(f"  pipelining: {result['pipelining_speedup']:.2f}x faster per image "
          f"({result['steps_ratio']:.2f}x fewer Lava steps per image)")


if __name__ == "__main__":
    main()
