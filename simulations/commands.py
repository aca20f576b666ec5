"""The simulation stage's sub-commands of ``sddpm``: simulate, finetune.

Declared here with light imports (argparse only), so that building the parser of any
``sddpm`` command loads neither torch nor NIR nor Lava; each runner imports its stage
when it runs.
"""

from __future__ import annotations

import json

from sddpm.commands import SAMPLER_HELP
from sddpm.command_line import positive_int
from sddpm.errors import SddpmError


def add_simulate(sub) -> None:
    p = sub.add_parser("simulate", help="denoising steps on Lava, compared with torch")
    p.add_argument("bundle", help="a folder written by 'sddpm-export --to lava'")
    p.add_argument("--backend", default="lava", help="lava (Lava's CPU backend)")
    p.add_argument("--fixed-point", action="store_true",
                   help="run Lava's fixed_pt models on the bundle's Loihi 2 integers")
    p.add_argument("--denoise-steps", type=steps_or_all, default=3,
                   help="K: the last K network calls of the schedule run in Lava, the ones "
                        "before in PyTorch (the fixed-point emulation with --fixed-point); "
                        "'all': every call")
    p.add_argument("--steps", type=positive_int, default=20,
                   help="S: steps of the sampler's schedule (default 20)")
    p.add_argument("--sampler", default="ddim", help=SAMPLER_HELP)
    p.add_argument("--n", type=positive_int, default=1, help="images, pipelined through Lava")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", default=None,
                   help="compare with this trained model instead of the reference executor")
    p.add_argument("--max-memory", default=None,
                   help="refuse a run estimated above this much memory (16GB, 1MB, ...; "
                        "default: what the machine has available)")
    p.add_argument("--conv-model", default="fast", choices=("fast", "lava"),
                   help="process model of Lava's Conv: the project's (fast) or Lava's own")
    p.add_argument("--spike-taps", default="all",
                   help="populations whose spikes are read and compared: all, none (a "
                        "process fewer per population; Lava is checked on its output "
                        "stream only), or K/M (the K-th of M parts, for M runs that "
                        "together compare every spike in less memory)")
    p.add_argument("--out", default="runs/simulate", help="folder for every output")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def steps_or_all(text: str):
    return "all" if text == "all" else positive_int(text)


def run_simulate(args, chip_energy=None) -> None:
    """The ``sddpm simulate`` command; the dispatcher hands in the energy pricer."""
    from sddpm.simulations.budget import parse_size
    from sddpm.simulations.simulate import print_report, run_simulation

    max_memory = None if args.max_memory is None else parse_size(args.max_memory)
    report = run_simulation(args.bundle, out=args.out, denoise_steps=args.denoise_steps,
                            steps=args.steps, max_memory=max_memory,
                            conv_model=args.conv_model, spike_taps=args.spike_taps,
                            n=args.n, seed=args.seed, fixed_point=args.fixed_point,
                            checkpoint=args.checkpoint, backend=args.backend,
                            sampler=args.sampler, chip_energy=chip_energy,
                            progress=not args.json)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)
        plot = ", comparison.png" if report["tapped_populations"] else ""
        print(f"wrote {args.out}/simulate.json, images_lava.png, images_torch.png{plot}")


def add_finetune(sub) -> None:
    p = sub.add_parser("finetune", help="quantisation-aware fine-tuning of a Lava bundle")
    p.add_argument("bundle", help="a folder written by 'sddpm-export --to lava'")
    p.add_argument("--fixed-point", action="store_true",
                   help="train through the fixed-point emulation (the one mode built)")
    p.add_argument("--out", required=True, help="folder for the fine-tuned bundle")
    p.add_argument("--steps", type=positive_int, default=200)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--batch", type=positive_int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None, help="where the training data lies")
    p.add_argument("--json", action="store_true")


def run_finetune(args) -> None:
    from sddpm.simulations.finetune import finetune

    if not args.fixed_point:
        raise SddpmError("finetune trains a deployment's fixed-point network; pass "
                         "--fixed-point (float fine-tuning is 'sddpm train --resume')")
    if not args.lr > 0:
        raise SddpmError(f"--lr must be positive, got {args.lr}")
    r = finetune(args.bundle, args.out, steps=args.steps, lr=args.lr, batch=args.batch,
                 seed=args.seed, data_dir=args.data_dir, progress=not args.json)
    if args.json:
        print(json.dumps(r, indent=2))
        return
    print(f"fine-tuned {r['steps']} steps in {r['seconds']} s ({r['weight_bits']}-bit weights): "
          f"probe loss {r['probe_loss_before']:.4f} -> {r['probe_loss_after']:.4f} on "
          f"{r['probe_images']} images (float graph {r['probe_loss_float']:.4f}); "
          f"{r['integer_weights_changed']:,} of "
          f"{r['integer_weights']:,} integer weights changed")
    print(f"wrote the bundle {r['out']} (with finetune.json, .csv, .png)")
