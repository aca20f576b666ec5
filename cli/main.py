"""The ``sddpm`` command: one dispatcher over every stage's sub-commands.

The top floor of the house. Each stage declares its own sub-commands next to its code
(:mod:`sddpm.commands`: train, sample, info, eval; :mod:`sddpm.simulations.commands`:
simulate, finetune; :mod:`sddpm.hardware.commands`: energy); this module puts them under
one parser, and composes what crosses stages: ``simulate`` gets the energy pricer of
:mod:`sddpm.hardware`, ``demo`` (:mod:`sddpm.cli.demo`) runs the whole chain. Declaring
the parsers imports argparse only; a command loads its stage when it runs.
"""

from __future__ import annotations

import argparse
import sys

from sddpm import commands as model_side
from sddpm.allocator import keep_freed_memory
from sddpm.command_line import OneLineParser, positive_int, run_command
from sddpm.hardware import commands as hardware
from sddpm.simulations import commands as simulations


def _run_simulate(args) -> None:
    from sddpm.hardware.deployed import DeployedEnergy

    simulations.run_simulate(args, chip_energy=DeployedEnergy("45nm-fp32", "paper"))


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="the main job on the shipped default (see README)")
    p.add_argument("--out", default="runs/demo", help="folder for every output")
    p.add_argument("--train-steps", type=positive_int, default=100)
    p.add_argument("--denoise-steps", type=positive_int, default=2,
                   help="DDIM steps simulated in Lava (floating point)")
    p.add_argument("--fixed-point-steps", type=positive_int, default=1,
                   help="DDIM steps simulated in Lava's fixed point")


def _run_demo(args) -> None:
    from sddpm.cli.demo import run_demo

    summary = run_demo(args.out, train_steps=args.train_steps,
                       denoise_steps=args.denoise_steps,
                       fixed_point_steps=args.fixed_point_steps)
    print(f"\nsddpm demo: every output is in {args.out}")
    train = summary["train"]
    print(f"  trained {train['preset']} for {train['steps']} steps in {train['seconds']} s, "
          f"last loss {train['last_loss']}")
    for key in ("brief_model", "shipped_model"):
        if key in summary:
            s = summary[key]
            print(f"  {key.replace('_', ' ')}: {s['arch']} {s['preset']}, {s['params']:,} "
                  f"parameters, {s['trained_steps']} steps -> {s['grid']} ({s['sampler']}, "
                  f"{s['sample_seconds']} s)")
    e = summary["energy"]
    print(f"  energy ({e['hardware']}, {e['sampler']}): {e['paper_mJ_per_forward']} mJ per forward, "
          f"{e['paper_mJ_per_image']} mJ per image ('paper'), {e['strict_mJ_per_image']} mJ "
          f"('strict') -> {e['folder']}")
    d = summary["deployment"]
    print(f"  NIR: {d['nir']} ({d['nir_nodes']} nodes, {d['nir_edges']} edges); Lava bundle "
          f"{d['bundle']} ({d['lava_processes']} processes, latency {d['latency_steps']} steps)")
    print(f"  Lava: {d['denoise_steps']} DDIM steps, spikes agree "
          f"{100 * d['worst_spike_agreement']:.3f}% in the worst population, eps relative "
          f"error {d['max_eps_rel_error']:.1e}, {d['seconds_per_lava_step']} s per Lava step "
          f"-> {d['folder']}")
    f = d["fixed_point"]
    print(f"  Lava fixed point ({f['weight_bits']}-bit weights): {f['denoise_steps']} DDIM step(s), "
          f"{f['spike_mismatches']:,} of {f['reference_spikes']:,} spikes differ from the "
          f"PyTorch emulation; eps relative error against the float model "
          f"{f['eps_rel_error_vs_float']:.3f} -> {f['folder']}")


COMMANDS = {
    "train": (model_side.add_train, model_side.run_train),
    "sample": (model_side.add_sample, model_side.run_sample),
    "info": (model_side.add_info, model_side.run_info),
    "convert": (model_side.add_convert, model_side.run_convert),
    "recalibrate": (model_side.add_recalibrate, model_side.run_recalibrate),
    "energy": (hardware.add_energy, hardware.run_energy),
    "eval": (model_side.add_eval, model_side.run_eval),
    "simulate": (simulations.add_simulate, _run_simulate),
    "finetune": (simulations.add_finetune, simulations.run_finetune),
    "demo": (_add_demo, _run_demo),
}


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="sddpm", description="spiking diffusion models: train, "
                           "sample, evaluate, price energy, simulate on Lava")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    for add, _ in COMMANDS.values():
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    keep_freed_memory()
    return run_command("sddpm", lambda: COMMANDS[args.command][1](args))


if __name__ == "__main__":
    sys.exit(main())
