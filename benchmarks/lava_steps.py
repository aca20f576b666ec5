"""Lava wall time per Lava step and per denoising step: float vs fixed point, single vs pipelined.

Builds the Lava network of a checkpoint (no spike taps) in floating point and in fixed
point, and for each, in one run: a forward pass of one image (T + latency steps, rounded
up to a multiple of T) and a pipelined batch of K images ((K-1) T more steps). Prints
seconds per Lava step, per denoising step of one image, per image when pipelined, the
ratios, and the PyTorch fixed-point emulation's time per image (batches of 32).

    python benchmarks/lava_steps.py [CKPT] [--images 4] [--repeats 2] [--json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from sddpm.allocator import keep_freed_memory
from sddpm.checkpoint import SHIPPED_CHECKPOINT
from sddpm.export.executor import HostSide
from sddpm.export.latency import balance
from sddpm.export.nir_to_lava import LavaNetwork
from sddpm.export.quantize import quantize_graph
from sddpm.export.torch_to_nir import export_nir
from sddpm.sampling import model_from_checkpoint
from sddpm.simulations.fixed_emulator import FixedPointNoisePredictor
from sddpm.simulations.lava_runner import LavaSession


def measure(network: LavaNetwork, per_image: list, repeats: int) -> dict:
    session = LavaSession(network)
    single, batch, single_steps, batch_steps = [], [], 0, 0
    try:
        for _ in range(repeats):
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
    K = len(per_image)
    return {
        "lava_processes": len(network.processes), "compile_s": session.compile_seconds,
        "steps_single": single_steps, "steps_batch": batch_steps,
        "s_per_lava_step": s_single / single_steps,
        "s_per_denoising_step_single": s_single,
        "s_per_image_pipelined": s_batch / K,
        "pipelining_speedup": s_single / (s_batch / K),
        "steps_ratio": single_steps / (batch_steps / K),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", default=str(SHIPPED_CHECKPOINT))
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--emulator-batch", type=int, default=32,
                        help="images per call of the PyTorch fixed-point emulation")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    keep_freed_memory()  # as the sddpm commands do

    model, _ = model_from_checkpoint(args.checkpoint)
    config = model.config
    graph = export_nir(model.double())
    fixed = quantize_graph(graph)
    host = HostSide(graph)
    x = torch.randn(args.images, config.image_channels, config.image_size, config.image_size,
                    generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    t = torch.full((args.images,), 500)
    feeds = host.inputs(x, t)
    per_image = [{k: v[b].numpy() for k, v in feeds.items()} for b in range(args.images)]
    runs = {"floating_pt": measure(LavaNetwork(graph, config.timesteps), per_image,
                                   args.repeats),
            "fixed_pt": measure(LavaNetwork(graph, config.timesteps, fixed=fixed), per_image,
                                args.repeats)}
    emulator = FixedPointNoisePredictor(graph, fixed)
    xe = torch.randn(args.emulator_batch, *x.shape[1:], dtype=torch.float64,
                     generator=torch.Generator().manual_seed(1))
    te = torch.full((args.emulator_batch,), 500)
    emulator(xe[:1], te[:1])  # warm-up: SLAYER's neurons size themselves on first use
    emulated = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        emulator(xe, te)
        emulated.append(time.perf_counter() - t0)
    s_emulated = statistics.median(emulated) / args.emulator_batch
    fixed_run = runs["fixed_pt"]
    result = {
        "checkpoint": args.checkpoint, "preset": config.name, "timesteps": config.timesteps,
        "latency_steps": balance(graph).latency(),
        "images": args.images, **runs,
        "fixed_over_float_per_lava_step": (fixed_run["s_per_lava_step"]
                                           / runs["floating_pt"]["s_per_lava_step"]),
        "emulator_s_per_image": s_emulated,
        "emulator_speedup_over_lava_fixed_pt": fixed_run["s_per_image_pipelined"] / s_emulated,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{config.name} T={config.timesteps}: latency {result['latency_steps']} steps")
    for precision, r in runs.items():
        print(f"{precision}: {r['lava_processes']} Lava processes, compile "
              f"{r['compile_s']:.1f} s")
        print(f"  one image:  {r['steps_single']} Lava steps, "
              f"{r['s_per_denoising_step_single']:.1f} s per denoising step, "
              f"{r['s_per_lava_step']:.3f} s per Lava step")
        print(f"  {args.images} images pipelined: {r['steps_batch']} steps, "
              f"{r['s_per_image_pipelined']:.1f} s per image per denoising step")
        print(f"  pipelining: {r['pipelining_speedup']:.2f}x faster per image "
              f"({r['steps_ratio']:.2f}x fewer Lava steps per image)")
    print(f"fixed_pt / floating_pt per Lava step: {result['fixed_over_float_per_lava_step']:.2f}x")
    print(f"PyTorch fixed-point emulation ({args.emulator_batch} images per call): "
          f"{s_emulated:.3f} s per image per denoising step, "
          f"{result['emulator_speedup_over_lava_fixed_pt']:.0f}x faster than pipelined "
          "Lava fixed_pt")


if __name__ == "__main__":
    main()
