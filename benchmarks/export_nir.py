"""Cost of the NIR export per preset: time, peak memory, file size, and what the
rewrites cost the chip (graph weights / torch parameters, synapses / dense MACs).

Each preset is exported in a fresh subprocess (random-init weights: the cost does not
depend on their values), so its peak resident memory is its own.

    python benchmarks/export_nir.py [--presets tiny fmnist-small cifar10] [--json]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, sys, time
import numpy as np, torch
from sddpm.export.nir_file import write_nir
from sddpm.export.summary import graph_summary
from sddpm.export.torch_to_nir import export_nir
from sddpm.allocator import keep_freed_memory
from sddpm.models import build_model, count_macs, count_params
from sddpm.presets import get_preset
keep_freed_memory()  # as sddpm-export does
config = get_preset(sys.argv[1]); torch.manual_seed(0)
model = build_model(config, "snn").eval()
params, macs = count_params(model), count_macs(model, config)["macs_per_forward"]
t0 = time.perf_counter()
graph = export_nir(model.double(), dtype=np.float32)
t1 = time.perf_counter()
path = write_nir(graph, sys.argv[2])
t2 = time.perf_counter()
s = graph_summary(graph)
print(json.dumps({"preset": config.name, "params": params, "dense_macs_per_timestep": macs,
                  "export_s": t1 - t0, "write_s": t2 - t1, "bytes": path.stat().st_size,
                  "nodes": s["nodes"], "edges": s["edges"], "weights": s["weights"],
                  "synapses_per_timestep": s["synapses_per_timestep"]}))
"""


def run(preset: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", CHILD, preset, str(Path(tmp) / "g.nir")],
                             capture_output=True, text=True, check=True,
                             cwd=Path(__file__).resolve().parents[1])
        result = json.loads(out.stdout.strip().splitlines()[-1])
        result["process_s"] = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        result["peak_rss_mb"] = peak / 1024 if peak > before else None  # max over children
    result["weights_per_param"] = result["weights"] / result["params"]
    result["synapses_per_dense_mac"] = result["synapses_per_timestep"] / result["dense_macs_per_timestep"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "digits-flat", "fmnist-small"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = [run(p) for p in args.presets]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{'preset':14s} {'params':>11s} {'export s':>9s} {'write s':>8s} {'peak MB':>8s} "
          f"{'file MB':>8s} {'nodes':>6s} {'edges':>6s} {'w/param':>8s} {'syn/MAC':>8s}")
    for r in results:
        peak = f"{r['peak_rss_mb']:8.0f}" if r["peak_rss_mb"] else "       -"
        print(f"{r['preset']:14s} {r['params']:11,d} {r['export_s']:9.2f} {r['write_s']:8.2f} "
              f"{peak} {r['bytes'] / 1e6:8.1f} {r['nodes']:6d} {r['edges']:6d} "
              f"{r['weights_per_param']:8.2f} {r['synapses_per_dense_mac']:8.2f}")
    print("peak MB: the running maximum over child processes (run presets in ascending size)")


if __name__ == "__main__":
    main()
