"""The ``sddpm-export`` command line: ``--to nir CKPT -o model.nir``, ``--to lava CKPT -o DIR``.

Every failure the user can fix is one line ``sddpm-export: error: ...``, exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from sddpm.allocator import keep_freed_memory
from sddpm.errors import SddpmError
from sddpm.outputs import writable_file, writable_folder

TARGETS = ("nir", "lava")
DTYPES = ("float32", "float64")


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="sddpm-export", description="export a trained spiking checkpoint")
    p.add_argument("checkpoint")
    p.add_argument("--to", required=True, choices=TARGETS)
    p.add_argument("-o", "--output", default=None,
                   help="nir: the .nir file (default: CKPT with the suffix .nir); "
                        "lava: the bundle folder (default: CKPT without suffix + '-lava')")
    p.add_argument("--diffusion-step", type=int, default=None,
                   help="export for this one diffusion step t (time embedding folded into "
                        "biases: a single Input)")
    p.add_argument("--dtype", default="float32", choices=DTYPES, help="of the weights")
    p.add_argument("--no-ema", action="store_true", help="export the raw, not the EMA, weights")
    p.add_argument("--threshold", type=float, default=None,
                   help="threshold guidance: export every IF neuron with this threshold")
    p.add_argument("--weight-bits", type=int, default=None,
                   help="lava: signed weight width of the bundle's fixed-point parameters "
                        "(default 8, what Loihi 2 holds; 2 to 8)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    return p


def _output_path(args) -> Path:
    path = Path(args.output) if args.output else Path(args.checkpoint).with_suffix(".nir")
    if path.resolve() == Path(args.checkpoint).resolve():
        raise SddpmError(f"output {path} is the checkpoint itself; give another -o")
    return writable_file(path, (".nir",))


def export_to_nir(args) -> dict:
    import numpy as np
    import torch

    from export.nir_file import write_nir
    from export.summary import graph_summary, host_macs
    from export.torch_to_nir import export_nir
    from sddpm.sampling import model_from_checkpoint

    out = _output_path(args)
    model, payload = model_from_checkpoint(args.checkpoint, use_ema=not args.no_ema,
                                           threshold=args.threshold)
    if payload["arch"] != "snn":
        raise SddpmError(f"{args.checkpoint} holds an ANN; only spiking models export to NIR")
    steps = model.config.diffusion_steps
    if args.diffusion_step is not None and not 0 <= args.diffusion_step < steps:
        raise SddpmError(f"--diffusion-step must lie in [0, {steps - 1}], got "
                         f"{args.diffusion_step}")
    t0 = time.perf_counter()
    graph = export_nir(model.to(torch.float64), diffusion_step=args.diffusion_step,
                       dtype=np.dtype(args.dtype))
    write_nir(graph, out)
    summary = {"checkpoint": str(args.checkpoint), "output": str(out),
               "bytes": out.stat().st_size, "seconds": round(time.perf_counter() - t0, 2),
               "diffusion_step": args.diffusion_step, "dtype": args.dtype,
               "threshold": args.threshold, **graph_summary(graph),
               "host_macs_per_forward": host_macs(model, args.diffusion_step is None)}
    return summary


def _bundle_folder(args) -> Path:
    ckpt = Path(args.checkpoint)
    path = Path(args.output) if args.output else ckpt.with_name(ckpt.stem + "-lava")
    return writable_folder(path, "bundle")


def lava_process_counts(graph, schedule) -> dict:
    """The Lava processes a bundle becomes (without building them)."""
    import nir

    from export.nir_file import Upsample2d

    from export.nir_file import neighbours

    convs = schedule.conv_instances()
    preds, _ = neighbours(graph)
    lines = {(preds[conv][0], wait) for conv, wait in convs if wait > 0}
    counts = {
        "lif": sum(isinstance(n, nir.IF) for n in graph.nodes.values()),
        "conv": len(convs), "delay_lines": len(lines),
        "upsample": sum(isinstance(n, Upsample2d) for n in graph.nodes.values()),
        "injectors": len(graph.inputs), "extractors": len(graph.outputs),
    }
    counts["total"] = sum(counts.values())
    return counts


def export_to_lava(args) -> dict:
    import hashlib

    import numpy as np
    import torch

    from export.latency import balance
    from export.lava_bundle import write_bundle
    from export.torch_to_nir import export_nir
    from sddpm.sampling import model_from_checkpoint

    bits = 8 if args.weight_bits is None else args.weight_bits
    if not 2 <= bits <= 8:
        raise SddpmError(f"--weight-bits must lie in [2, 8] (Loihi 2's synapses hold 8), "
                         f"got {bits}")
    model, payload = model_from_checkpoint(args.checkpoint, use_ema=not args.no_ema,
                                           threshold=args.threshold)
    if payload["arch"] != "snn":
        raise SddpmError(f"{args.checkpoint} holds an ANN; only spiking models deploy to Lava")
    folder = _bundle_folder(args)
    t0 = time.perf_counter()
    # float64 in the bundle: the simulation is the check that Lava runs the trained model
    graph = export_nir(model.to(torch.float64), dtype=np.float64)
    digest = hashlib.sha256(Path(args.checkpoint).read_bytes()).hexdigest()
    write_bundle(graph, folder, weight_bits=bits, source={
        "checkpoint": str(args.checkpoint), "sha256": digest, "step": payload["step"],
        "preset": model.config.name, "ema": not args.no_ema, "threshold": args.threshold})
    schedule = balance(graph)
    return {"checkpoint": str(args.checkpoint), "output": str(folder),
            "seconds": round(time.perf_counter() - t0, 2), "weight_bits": bits,
            "latency_steps": schedule.latency(),
            "steps_per_forward": schedule.steps_per_forward(model.config.timesteps),
            "processes": lava_process_counts(graph, schedule)}


def _print_lava_summary(s: dict) -> None:
    p = s["processes"]
    print(f"wrote the Lava bundle {s['output']} ({s['seconds']} s)")
    print(f"  {p['total']} Lava processes: {p['lif']} LIF, {p['conv']} Conv, "
          f"{p['delay_lines']} delay lines, {p['upsample']} upsampling Sparse, "
          f"{p['injectors']} injectors, {p['extractors']} extractor")
    print(f"  floating point and fixed point ({s['weight_bits']}-bit weights) parameters")
    print(f"  latency {s['latency_steps']} Lava steps; one forward pass takes "
          f"{s['steps_per_forward']} steps, each further pipelined image T more")


def _print_summary(s: dict) -> None:
    print(f"wrote {s['output']} ({s['bytes'] / 1e6:.1f} MB, {s['seconds']} s)")
    print(f"  {s['populations']} IF populations, {s['neurons']:,} neurons; "
          f"{s['synaptic_maps']} synaptic maps, {s['weights']:,} weights, "
          f"{s['synapses_per_timestep']:,} synapses per timestep")
    print(f"  {s['nodes']} nodes, {s['edges']} edges; inputs {', '.join(s['inputs'])}; "
          f"outputs {', '.join(s['outputs'])}; {s['extension_nodes']} sddpm.Upsample2d nodes")
    print(f"  host side: {s['host_macs_per_forward']:,} MACs per forward pass")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    keep_freed_memory()
    if args.to == "nir" and args.weight_bits is not None:
        print("sddpm-export: error: --weight-bits is for --to lava (a NIR file holds the "
              "float graph)", file=sys.stderr)
        return 2
    try:
        summary = export_to_lava(args) if args.to == "lava" else export_to_nir(args)
    except SddpmError as e:
        print(f"sddpm-export: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        print(f"sddpm-export: error: {e.strerror or e}{where}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summary, indent=2))
    elif args.to == "lava":
        _print_lava_summary(summary)
    else:
        _print_summary(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
