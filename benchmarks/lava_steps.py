"""Lava wall time per Lava step: Lava's Conv model against ours, float vs fixed, pipelined.

Builds the Lava network of a checkpoint (no spike taps) in floating point and in fixed
point, and for each precision runs it twice in one go, once with Lava's own ``Conv``
process model and once with the project's (:mod:`sddpm.export.lava_conv`), on the same
inputs: a forward pass of one image (T + latency steps, rounded up to a multiple of T)
and a pipelined batch of K images ((K-1) T more steps). Prints seconds per Lava step,
per denoising step of one image, per image when pipelined, the ratios, whether both
Conv models gave the same output stream (bit for bit in fixed point), the Conv
arithmetic alone per Lava step (both models' arithmetic timed in this process on the
network's own spikes: how much of a Lava step the convolutions are), and the PyTorch
fixed-point emulation's time per image (batches of 32).

    python benchmarks/lava_steps.py [CKPT] [--images 4] [--repeats 2] [--json]
        [--conv-models lava,fast]
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


def measure(network: LavaNetwork, per_image: list, repeats: int, conv_model: str) -> dict:
    session = LavaSession(network, conv_model=conv_model)
    single, batch, single_steps, batch_steps = [], [], 0, 0
    streams = []
    try:
        for _ in range(repeats):
            for images, times in ((per_image[:1], single), (per_image, batch)):
                before, t0 = session.lava_steps, time.perf_counter()
                streams.append(session.forward(images))
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
        "streams": streams,
    }


def conv_arithmetic(graph, fixed, feeds, T: int) -> dict:
    """Seconds of Conv arithmetic per Lava step, Lava's against ours, on real spikes.

    Every conv of the graph is fed its source population's spikes of one image at each
    of the T timesteps (from the reference executor), as it is inside Lava.
    """
    import nir
    import numpy as np
    from lava.proc.conv import utils

    from sddpm.export.executor import NirExecutor
    from sddpm.export.graph import neighbours
    from sddpm.export.lava_conv.kernel import ConvGeometry, SpikeConv
    from sddpm.export.nir_file import Upsample2d
    from sddpm.export.nir_to_lava import lava_conv_weight, to_whc

    _, spikes = NirExecutor(graph).run({k: v[:1] for k, v in feeds.items()}, T)
    preds, _ = neighbours(graph)
    seconds = {"lava": 0.0, "fast": 0.0}
    calls = {"dense": 0, "events": 0}
    for name, node in graph.nodes.items():
        if not isinstance(node, nir.Conv2d):
            continue
        (source,) = preds[name]
        if isinstance(graph.nodes[source], Upsample2d):
            (pop,) = preds[source]
            f = int(graph.nodes[source].scale_factor[0])
            inputs = spikes[pop][:, 0].repeat_interleave(f, -1).repeat_interleave(f, -2)
        else:
            inputs = spikes[source][:, 0]
        frames = [to_whc(x.numpy()) for x in inputs]
        weight = lava_conv_weight(np.asarray(node.weight, dtype=np.float64) if fixed is None
                                  else fixed.weights[name])
        k = weight.shape[1:3]
        stride = tuple(int(v) for v in node.stride)[::-1]
        padding = tuple(int(v) for v in node.padding)[::-1]
        fast = SpikeConv(weight, ConvGeometry(frames[0].shape, k, stride, padding,
                                              weight.shape[0]))
        t0 = time.perf_counter()
        for x in frames:
            utils.conv(x.astype(bool), weight, k, stride, padding, (1, 1), 1)
        seconds["lava"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        for x in frames:
            fast(x)
        seconds["fast"] += time.perf_counter() - t0
        for how, n in fast.calls.items():
            calls[how] += n
    per_step = {m: s / T for m, s in seconds.items()}
    return {"s_per_lava_step": per_step, "ratio": per_step["lava"] / per_step["fast"],
            "products": calls}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", default=str(SHIPPED_CHECKPOINT))
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--emulator-batch", type=int, default=32,
                        help="images per call of the PyTorch fixed-point emulation")
    parser.add_argument("--conv-models", default="lava,fast",
                        help="Conv process models to run side by side (lava, fast)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    keep_freed_memory()  # as the sddpm commands do
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # as inside each Lava process
    conv_models = args.conv_models.split(",")

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
    runs, same, arithmetic = {}, {}, {}
    for precision, params in (("floating_pt", None), ("fixed_pt", fixed)):
        for conv_model in conv_models:
            runs[f"{precision}/{conv_model}"] = measure(
                LavaNetwork(graph, config.timesteps, fixed=params), per_image, args.repeats,
                conv_model)
        if len(conv_models) == 2:
            a, b = (runs[f"{precision}/{m}"] for m in conv_models)
            same[precision] = max(float(abs(x - y).max()) for x, y in
                                  zip(a["streams"], b["streams"]))
            a["speedup_of_fast"] = (runs[f"{precision}/lava"]["s_per_lava_step"]
                                    / runs[f"{precision}/fast"]["s_per_lava_step"])
        arithmetic[precision] = conv_arithmetic(graph, params, feeds, config.timesteps)
    for r in runs.values():
        del r["streams"]
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
    best = conv_models[-1]
    fixed_run = runs[f"fixed_pt/{best}"]
    result = {
        "checkpoint": args.checkpoint, "preset": config.name, "timesteps": config.timesteps,
        "latency_steps": balance(graph).latency(),
        "images": args.images, **runs,
        "stream_max_abs_difference_between_conv_models": same,
        "conv_arithmetic": arithmetic,
        "fixed_over_float_per_lava_step": (fixed_run["s_per_lava_step"]
                                           / runs[f"floating_pt/{best}"]["s_per_lava_step"]),
        "emulator_s_per_image": s_emulated,
        "emulator_speedup_over_lava_fixed_pt": fixed_run["s_per_image_pipelined"] / s_emulated,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{config.name} T={config.timesteps}: latency {result['latency_steps']} steps")
    for precision, r in runs.items():
        print(f"{precision} Conv model: {r['lava_processes']} Lava processes, compile "
              f"{r['compile_s']:.1f} s")
        print(f"  one image:  {r['steps_single']} Lava steps, "
              f"{r['s_per_denoising_step_single']:.1f} s per denoising step, "
              f"{r['s_per_lava_step']:.3f} s per Lava step")
        print(f"  {args.images} images pipelined: {r['steps_batch']} steps, "
              f"{r['s_per_image_pipelined']:.1f} s per image per denoising step")
        print(f"  pipelining: {r['pipelining_speedup']:.2f}x faster per image "
              f"({r['steps_ratio']:.2f}x fewer Lava steps per image)")
    for precision, diff in same.items():
        lava, fast = (runs[f"{precision}/{m}"]["s_per_lava_step"] for m in ("lava", "fast"))
        print(f"{precision}: our Conv model {lava / fast:.1f}x faster per Lava step than "
              f"Lava's ({lava:.3f} -> {fast:.3f} s); output streams differ by at most {diff:.1e}")
    for precision, a in arithmetic.items():
        s = a["s_per_lava_step"]
        print(f"{precision}: Conv arithmetic alone, one process: Lava's {s['lava']:.3f} s, "
              f"ours {s['fast']:.4f} s per Lava step ({a['ratio']:.0f}x; products "
              f"{a['products']})")
    print(f"fixed_pt / floating_pt per Lava step: {result['fixed_over_float_per_lava_step']:.2f}x")
    print(f"PyTorch fixed-point emulation ({args.emulator_batch} images per call): "
          f"{s_emulated:.3f} s per image per denoising step, "
          f"{result['emulator_speedup_over_lava_fixed_pt']:.0f}x faster than pipelined "
          "Lava fixed_pt")


if __name__ == "__main__":
    main()
