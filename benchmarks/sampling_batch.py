"""What glibc's malloc settings cost a sampling forward pass at a large batch.

Times no-grad forward passes of a checkpoint's noise predictor (the shipped SNN by
default) at ``--batch`` images, each in a fresh process per malloc setting, the settings
alternating round by round so that machine load hits them alike:

- ``system``: glibc's defaults (blocks above the dynamic threshold, at most 32 MB, are
  mmapped and unmapped on every free);
- ``mmap-32MB``: ``MALLOC_MMAP_THRESHOLD_=33554432`` plus the trim threshold, what the
  Makefile exported before;
- ``sddpm``: what the ``sddpm`` and ``sddpm-export`` commands now set at start
  (``sddpm.allocator.keep_freed_memory``).

The first pass of each process is not timed (oneDNN's primitive caches; glibc settling
its heap), as a long sampling run amortises both. Prints the median (and the range) of
seconds per forward pass, the child's peak RSS, and each ratio to ``system``.

    python benchmarks/sampling_batch.py [CKPT] [--batch 100] [--passes 3] [--rounds 3]
        [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

SETTINGS = {
    "system": {},
    "mmap-32MB": {"MALLOC_MMAP_THRESHOLD_": "33554432",
                  "MALLOC_TRIM_THRESHOLD_": "1000000000000"},
    "sddpm": {},
}
MALLOC_VARS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


def time_forward(checkpoint: str, batch: int, passes: int, keep: bool) -> dict:
    """Child process: seconds per forward pass (after one warm-up) and peak RSS."""
    import resource
    import time

    import torch

    from sddpm.allocator import keep_freed_memory
    from sddpm.presets import ModelConfig
    from sddpm.sampling import model_from_checkpoint

    kept = keep_freed_memory() if keep else {}
    model, payload = model_from_checkpoint(checkpoint)
    config = ModelConfig.from_dict(payload["model_config"])
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, config.image_channels, config.image_size, config.image_size,
                    generator=generator)
    t = torch.full((batch,), config.diffusion_steps // 2, dtype=torch.long)
    seconds = []
    with torch.no_grad():
        for i in range(passes + 1):
            t0 = time.perf_counter()
            model(x, t)
            if i:
                seconds.append(time.perf_counter() - t0)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"seconds": seconds, "peak_rss_mb": usage.ru_maxrss / 1024,
            "threads": torch.get_num_threads(), "keep_freed_memory": kept}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", default=None)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--passes", type=int, default=3, help="timed passes per process")
    parser.add_argument("--rounds", type=int, default=3, help="processes per setting")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", choices=["plain", "keep"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.checkpoint is None:
        from sddpm.checkpoint import SHIPPED_CHECKPOINT
        args.checkpoint = str(SHIPPED_CHECKPOINT)
    if args.child:
        print(json.dumps(time_forward(args.checkpoint, args.batch, args.passes,
                                      args.child == "keep")))
        return

    base_env = {k: v for k, v in os.environ.items() if k not in MALLOC_VARS}
    runs = {name: [] for name in SETTINGS}
    for _ in range(args.rounds):
        for name, extra in SETTINGS.items():
            child = "keep" if name == "sddpm" else "plain"
            out = subprocess.run(
                [sys.executable, __file__, args.checkpoint, "--batch", str(args.batch),
                 "--passes", str(args.passes), "--child", child],
                env={**base_env, **extra}, capture_output=True, text=True, check=True)
            runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    seconds = {n: [s for r in rs for s in r["seconds"]] for n, rs in runs.items()}
    median = {n: statistics.median(ts) for n, ts in seconds.items()}
    result = {
        "checkpoint": args.checkpoint, "batch": args.batch, "passes": args.passes,
        "rounds": args.rounds, "threads": runs["system"][0]["threads"],
        "median_s": median, "range_s": {n: [min(ts), max(ts)] for n, ts in seconds.items()},
        "ratio_to_system": {n: median[n] / median["system"] for n in median},
        "peak_rss_mb": {n: max(r["peak_rss_mb"] for r in rs) for n, rs in runs.items()},
        "sddpm_thresholds": runs["sddpm"][0]["keep_freed_memory"],
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"forward pass at batch {args.batch}, {args.passes} passes x {args.rounds} "
          f"processes per setting, {result['threads']} threads; sddpm's glibc thresholds: "
          f"{result['sddpm_thresholds'] or 'none set (not glibc, or set in the environment)'}")
    for name in SETTINGS:
        low, high = result["range_s"][name]
        print(f"  {name:<10} {median[name]:7.2f} s/pass ({low:.2f}-{high:.2f})  "
              f"{result['ratio_to_system'][name]:5.2f}x system  "
              f"peak RSS {result['peak_rss_mb'][name]:7.0f} MB")


if __name__ == "__main__":
    main()
