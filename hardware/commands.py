"""``sddpm energy``: profile a checkpoint's sampling run and price it; Table 3 beside ours."""

from __future__ import annotations

import json
import sys

from sddpm.command_line import positive_int
from sddpm.commands import THRESHOLD_HELP, threshold_option
from sddpm.errors import SddpmError


def add_energy(sub) -> None:
    p = sub.add_parser("energy", help="spike-rate profile and energy of a checkpoint")
    p.add_argument("checkpoint", nargs="?", default=None,
                   help="checkpoint to profile (--reproduce-table3: the shipped SNN)")
    p.add_argument("--hardware", default="45nm-fp32",
                   help="hardware cost file by name (hardware/costs) or a path to a .json")
    p.add_argument("--convention", default="paper", help="paper or strict")
    p.add_argument("--sampler", default="ddim", help="ddpm (all steps) or ddim")
    p.add_argument("--steps", type=positive_int, default=50, help="DDIM steps")
    p.add_argument("--n", type=positive_int, default=8, help="images sampled while profiling")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threshold", default=None, metavar="T|MAP",
                   help="threshold guidance while profiling; " + THRESHOLD_HELP)
    p.add_argument("--profile", default=None, help="price a saved profile.h5 instead")
    p.add_argument("--out", default=None, help="folder for profile, tables and plots")
    p.add_argument("--reproduce-table3", action="store_true",
                   help="the paper's Table 3 beside ours")
    p.add_argument("--compare", action="store_true",
                   help="every convention side by side (paper, strict, neurobench, memory, "
                        "deployed), per layer, with the SNN/ANN ratio")
    p.add_argument("--ann", default=None,
                   help="the ANN twin for --compare (default: *-ann.pt beside the checkpoint)")
    p.add_argument("--json", action="store_true", help="print JSON")


def _check_table3_options(args) -> None:
    # the paper's figures are 45 nm fp32 under its own convention; nothing else compares
    if args.hardware != "45nm-fp32" or args.convention != "paper" or args.out:
        raise SddpmError("--reproduce-table3 prices on 45nm-fp32 under the 'paper' "
                         "convention and prints only; drop --hardware, --convention and --out")


def run_energy(args) -> None:
    """The ``sddpm energy`` command, options as :func:`add_energy` declares them."""
    from sddpm.checkpoint import SHIPPED_CHECKPOINT
    from sddpm.hardware.energy import check_convention, energy_report
    from sddpm.hardware.hardware_costs import load_hardware_costs
    from sddpm.hardware.profiler import profile_checkpoint
    from sddpm.hardware.reports import format_report, format_table3, write_outputs
    from sddpm.hardware.spike_profile import SpikeProfile
    from sddpm.outputs import writable_folder

    if args.reproduce_table3:
        _check_table3_options(args)
    if args.compare and not args.reproduce_table3:
        return _run_compare(args)
    if args.ann:
        raise SddpmError("--ann is the ANN twin of --compare; add --compare")
    hardware = load_hardware_costs(args.hardware)
    check_convention(args.convention)  # before profiling, which is the long part
    out = writable_folder(args.out, "--out") if args.out else None
    if args.profile:
        profile = SpikeProfile.load_h5(args.profile)
    else:
        checkpoint = args.checkpoint or (SHIPPED_CHECKPOINT if args.reproduce_table3 else None)
        if checkpoint is None:
            raise SddpmError("give a checkpoint to profile, or --profile FILE.h5")
        profile = profile_checkpoint(checkpoint, sampler=args.sampler, steps=args.steps,
                                     n=args.n, seed=args.seed, threshold=threshold_option(args),
                                     progress=not args.json,
                                     require_snn=args.reproduce_table3)
    if args.reproduce_table3:
        from sddpm.hardware.table3 import reproduce_table3

        if args.compare:
            from sddpm.hardware.table3 import format_table3_compare, reproduce_table3_compare

            result = reproduce_table3_compare(
                profile, progress=None if args.json else lambda m: print(m, file=sys.stderr))
            print(json.dumps(result, indent=2) if args.json else format_table3_compare(result))
            return
        result = reproduce_table3(profile, hardware)
        print(json.dumps(result, indent=2) if args.json else format_table3(result))
        return
    report = energy_report(profile, hardware, args.convention)
    written = write_outputs(out, profile, report) if out else []
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(format_report(report))
        for path in written:
            print(f"wrote {path}")


def _run_compare(args) -> None:
    from sddpm.hardware.compare import compare_checkpoint, format_compare
    from sddpm.outputs import writable_folder

    if args.profile or args.convention != "paper" or args.hardware != "45nm-fp32":
        raise SddpmError("--compare profiles the checkpoint and prices it under every "
                         "convention on each one's own hardware; drop --profile, "
                         "--convention and --hardware")
    if args.checkpoint is None:
        raise SddpmError("give the SNN checkpoint to compare, e.g. "
                         "checkpoints/fmnist-small-snn.pt")
    out = writable_folder(args.out, "--out") if args.out else None
    result = compare_checkpoint(args.checkpoint, ann=args.ann, sampler=args.sampler,
                                steps=args.steps, n=args.n, seed=args.seed,
                                threshold=threshold_option(args), progress=not args.json)
    written = []
    if out:
        from sddpm.hardware.reports import write_compare

        written = write_compare(out, result)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_compare(result))
        for path in written:
            print(f"wrote {path}")
