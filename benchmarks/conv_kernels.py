"""The two products of the project's Conv process model, timed by input spike density.

For conv shapes of the shipped and the paper's networks, times the dense product
(unfolded patches x kernel, BLAS) and the event-driven one (sparse one-hot x kernel) on
random binary inputs of several densities, one BLAS thread as inside a Lava process, and
says which one the cost model (``export/lava_conv/kernel.py``) picks. The cost model's
constants were read off this output on the project's 2-core machine.

    python benchmarks/conv_kernels.py [--repeats 5] [--json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
from threadpoolctl import threadpool_limits

from sddpm.export.lava_conv.kernel import ConvGeometry, SpikeConv

#: (W = H, C_in, C_out, kernel): cifar10's 32x32x128 and 4x4x512 maps, fmnist-small's
SHAPES = [(32, 128, 128, 3), (16, 256, 256, 3), (4, 512, 512, 3), (32, 32, 32, 3),
          (8, 64, 64, 3), (32, 128, 128, 1)]
DENSITIES = [0.01, 0.05, 0.1, 0.2, 0.4]


def _time(f, x, repeats: int) -> float:
    f(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f(x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    threadpool_limits(1)
    rng = np.random.default_rng(0)
    rows = []
    for w, c_in, c_out, k in SHAPES:
        conv = SpikeConv(rng.normal(size=(c_out, k, k, c_in)),
                         ConvGeometry((w, w, c_in), (k, k), (1, 1), (k // 2, k // 2), c_out))
        for density in DENSITIES:
            x = rng.random((w, w, c_in)) < density
            dense, events = (_time(f, x, args.repeats) for f in (conv.dense, conv.events))
            rows.append({"shape": f"{w}x{w}x{c_in}->{c_out} k{k}", "density": density,
                         "dense_ms": dense * 1e3, "events_ms": events * 1e3,
                         "faster": "events" if events < dense else "dense",
                         "chosen": conv.choose(int(x.sum()))})
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'shape':24s} {'density':>7s} {'dense ms':>9s} {'events ms':>10s} "
          f"{'faster':>7s} {'chosen':>7s}")
    for r in rows:
        print(f"{r['shape']:24s} {r['density']:7.2f} {r['dense_ms']:9.2f} "
              f"{r['events_ms']:10.2f} {r['faster']:>7s} {r['chosen']:>7s}")
    agree = sum(r["faster"] == r["chosen"] for r in rows)
    print(f"the cost model chose the faster product in {agree} of {len(rows)} cases")


if __name__ == "__main__":
    main()
