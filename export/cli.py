"""The ``sddpm-export`` command line: ``--to nir CKPT -o model.nir``, ``--to lava CKPT -o DIR``.

Every failure the user can fix is one line ``sddpm-export: error: ...``, exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys

from sddpm.allocator import keep_freed_memory
from sddpm.command_line import OneLineParser, run_command
from sddpm.commands import THRESHOLD_HELP, threshold_option
from sddpm.errors import SddpmError
from sddpm.export.from_checkpoint import DTYPES, export_to_lava, export_to_nir

TARGETS = ("nir", "lava")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="sddpm-export", description="export a trained spiking checkpoint")
    p.add_argument("checkpoint")
    p.add_argument("--to", required=True, choices=TARGETS)
    p.add_argument("-o", "--output", default=None,
                   help="nir: the .nir file (default: CKPT with the suffix .nir); "
                        "lava: the bundle folder (default: CKPT without suffix + '-lava')")
    p.add_argument("--diffusion-step", type=int, default=None,
                   help="export for this one diffusion step t (time embedding folded into "
                        "biases: a single Input)")
    p.add_argument("--dtype", default="float32", choices=DTYPES,
                   help="of the stored weights: float32 (as trained) or float64 (folded "
                        "batch norms to the last bit, to compare with the torch model in "
                        "float64 spike for spike)")
    p.add_argument("--no-ema", action="store_true", help="export the raw, not the EMA, weights")
    p.add_argument("--threshold", default=None, metavar="T|MAP",
                   help="export with threshold guidance; " + THRESHOLD_HELP)
    p.add_argument("--weight-bits", type=int, default=None,
                   help="lava: signed weight width of the bundle's fixed-point parameters "
                        "(default 8, what Loihi 2 holds; 2 to 8)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    return p


def _print_lava_summary(s: dict) -> None:
    p = s["processes"]
    print(f"wrote the Lava bundle {s['output']} ({s['seconds']} s)")
    print(f"  {p['total']} Lava processes: {p['lif']} LIF, {p['conv']} Conv, "
          f"{p['delay_lines']} delay lines, {p['upsample']} upsampling Sparse, "
          f"{p['injectors']} injectors, {p['extractors']} extractor")
    print(f"  floating point and fixed point ({s['weight_bits']}-bit weights) parameters")
    print(f"  latency {s['latency_steps']} Lava steps; one forward pass takes "
          f"{s['steps_per_forward']} steps, each further pipelined image T more")
    files = ", ".join(f"{name} {size / 1e6:.1f} MB" for name, size in s["bytes"].items())
    print(f"  files: {files}")
    from sddpm.export.loihi2 import format_report

    print("Loihi 2 resources (also in the manifest, 'loihi2_resources'):")
    print(format_report(s["loihi2_resources"]))


def _print_summary(s: dict) -> None:
    print(f"wrote {s['output']} ({s['bytes'] / 1e6:.1f} MB, {s['seconds']} s)")
    print(f"  {s['populations']} IF populations, {s['neurons']:,} neurons; "
          f"{s['synaptic_maps']} synaptic maps, {s['weights']:,} weights, "
          f"{s['synapses_per_timestep']:,} synapses per timestep")
    print(f"  {s['nodes']} nodes, {s['edges']} edges; inputs {', '.join(s['inputs'])}; "
          f"outputs {', '.join(s['outputs'])}; {s['extension_nodes']} sddpm.Upsample2d nodes")
    print(f"  host side: {s['host_macs_per_forward']:,} MACs per forward pass")


def _export(args) -> None:
    common = dict(output=args.output, use_ema=not args.no_ema, threshold=threshold_option(args))
    if args.to == "nir":
        if args.weight_bits is not None:
            raise SddpmError("--weight-bits is for --to lava (a NIR file holds the float "
                             "graph)")
        summary = export_to_nir(args.checkpoint, diffusion_step=args.diffusion_step,
                                dtype=args.dtype, **common)
    else:
        bits = 8 if args.weight_bits is None else args.weight_bits
        summary = export_to_lava(args.checkpoint, weight_bits=bits, dtype=args.dtype, **common)
    if args.json:
        print(json.dumps(summary, indent=2))
    elif args.to == "lava":
        _print_lava_summary(summary)
    else:
        _print_summary(summary)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    keep_freed_memory()
    return run_command("sddpm-export", lambda: _export(args))


if __name__ == "__main__":
    sys.exit(main())
