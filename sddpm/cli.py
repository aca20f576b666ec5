"""The ``sddpm`` command line: train, sample, info, energy, eval, simulate, demo.

Only this module reads argv. Every failure the user can fix is an :class:`SddpmError`,
printed as one line ``sddpm: error: ...`` with exit status 2; no traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sddpm.allocator import keep_freed_memory
from sddpm.errors import SddpmError
from sddpm.outputs import writable_file as _writable_output
from sddpm.presets import ARCHS, PRESETS


class _Parser(argparse.ArgumentParser):
    """argparse, but its errors are one line too."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a spiking U-Net or its ANN twin")
    p.add_argument("--preset", default="fmnist-small", help=f"one of {', '.join(PRESETS)}")
    p.add_argument("--arch", default="snn", help="snn (spiking U-Net) or ann (DDPM twin)")
    p.add_argument("--neuron", default="snntorch", help="snntorch, snntorch-loop or norse")
    p.add_argument("--timesteps", "-T", type=_positive_int, default=4, help="spiking timesteps")
    p.add_argument("--steps", type=_positive_int, default=1000, help="optimizer steps in all")
    p.add_argument("--batch-size", type=_positive_int, default=0, help="global batch (preset's)")
    p.add_argument("--lr", type=_positive_float, default=0.0, help="Adam learning rate (preset's)")
    p.add_argument("--warmup", type=int, default=200, help="linear lr warm-up steps")
    p.add_argument("--ema", type=float, default=0.999, help="EMA decay; 0 disables EMA")
    p.add_argument("--grad-clip", type=_positive_float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ckpt-every", type=_positive_int, default=500)
    p.add_argument("--sample-every", type=_positive_int, default=1000)
    p.add_argument("--data-dir", default="", help="folder of the data set files")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--out", default="runs/train", help="output folder")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")


def _run_train(args) -> None:
    from sddpm.train import TrainConfig, Trainer

    config = TrainConfig(
        preset=args.preset, arch=args.arch, neuron=args.neuron, timesteps=args.timesteps,
        steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup=args.warmup,
        ema_decay=args.ema, grad_clip=args.grad_clip, seed=args.seed,
        ckpt_every=args.ckpt_every, sample_every=args.sample_every, data_dir=args.data_dir,
        out=args.out, device=args.device,
    )
    trainer = Trainer(config, resume=args.resume)
    loss = trainer.run()
    if trainer.rank == 0:
        print(f"trained {config.arch} {config.preset} to step {trainer.step}, "
              f"last loss {loss:.4f}; checkpoint {Path(config.out) / 'last.pt'}")


def _add_sample(sub) -> None:
    p = sub.add_parser("sample", help="generate images from a checkpoint")
    p.add_argument("checkpoint")
    p.add_argument("--n", type=_positive_int, default=64, help="number of images")
    p.add_argument("--sampler", default="ddpm", help="ddpm (all steps) or ddim")
    p.add_argument("--steps", type=_positive_int, default=50, help="DDIM steps")
    p.add_argument("--eta", type=float, default=0.0, help="DDIM stochasticity")
    p.add_argument("--threshold", type=_positive_float, default=None,
                   help="threshold guidance: one threshold for every IF neuron")
    p.add_argument("--neuron", default=None, help="run with another neuron backend")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=_positive_int, default=64, help="images per forward pass")
    p.add_argument("--no-ema", action="store_true", help="use the raw, not the EMA, weights")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="samples.png", help="PNG grid")
    p.add_argument("--npz", default=None, help="also save uint8 images [N,H,W,C] here")


def _run_sample(args) -> None:
    import numpy as np

    from sddpm.diffusion import SAMPLERS
    from sddpm.sampling import sample_checkpoint, save_grid, to_uint8
    from sddpm.train import resolve_device

    if args.sampler not in SAMPLERS:
        raise SddpmError(f"unknown sampler {args.sampler!r}; choose 'ddpm' or 'ddim'")
    if not 0 <= args.eta <= 1:
        raise SddpmError(f"--eta must lie in [0, 1] (0: deterministic DDIM), got {args.eta}")
    grid_path = _writable_output(args.out, (".png", ".jpg", ".jpeg"))
    npz_path = _writable_output(args.npz, (".npz",)) if args.npz else None
    images, _, _ = sample_checkpoint(
        args.checkpoint, n=args.n, sampler=args.sampler, steps=args.steps, eta=args.eta,
        seed=args.seed, batch=args.batch, device=resolve_device(args.device, 0),
        use_ema=not args.no_ema, neuron=args.neuron, threshold=args.threshold)
    print(f"wrote {save_grid(images, grid_path)}")
    if npz_path:
        np.savez_compressed(npz_path, images=to_uint8(images))
        print(f"wrote {npz_path}")


def _add_info(sub) -> None:
    p = sub.add_parser("info", help="parameters and dense MACs of a preset")
    p.add_argument("--preset", default="cifar10", help=f"one of {', '.join(PRESETS)}")
    p.add_argument("--arch", default="snn", help=f"one of {', '.join(ARCHS)}")
    p.add_argument("--timesteps", "-T", type=_positive_int, default=None)
    p.add_argument("--json", action="store_true", help="print JSON")


def _run_info(args) -> None:
    from sddpm.models import build_model, count_macs, count_params
    from sddpm.presets import check_arch, get_preset

    config = get_preset(args.preset)
    if args.timesteps is not None:
        config = config.with_timesteps(args.timesteps)
    model = build_model(config, check_arch(args.arch))
    info = {"preset": config.name, "arch": args.arch, "params": count_params(model),
            **count_macs(model, config), "config": config.to_dict()}
    if args.arch == "snn":
        info["timesteps"] = config.timesteps
        info["macs_unit"] = "per spiking timestep, batch 1"
    else:
        info["macs_unit"] = "per forward, batch 1"
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(f"{config.name} {args.arch}: {info['params']:,} parameters, "
              f"{info['macs_per_forward'] / 1e9:.4f} G MACs ({info['macs_unit']})")


def _add_energy(sub) -> None:
    p = sub.add_parser("energy", help="spike-rate profile and energy of a checkpoint")
    p.add_argument("checkpoint", nargs="?", default=None,
                   help="checkpoint to profile (--reproduce-table3: the shipped SNN)")
    p.add_argument("--hardware", default="45nm-fp32",
                   help="hardware profile name (hardware/profiles) or a profile .json")
    p.add_argument("--convention", default="paper", help="paper or strict")
    p.add_argument("--sampler", default="ddim", help="ddpm (all steps) or ddim")
    p.add_argument("--steps", type=_positive_int, default=50, help="DDIM steps")
    p.add_argument("--n", type=_positive_int, default=8, help="images sampled while profiling")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threshold", type=_positive_float, default=None,
                   help="threshold guidance while profiling")
    p.add_argument("--profile", default=None, help="price a saved profile.h5 instead")
    p.add_argument("--out", default=None, help="folder for profile, tables and plots")
    p.add_argument("--reproduce-table3", action="store_true",
                   help="the paper's Table 3 beside ours")
    p.add_argument("--json", action="store_true", help="print JSON")


def _run_energy(args) -> None:
    from hardware.energy_cli import run_energy

    run_energy(args)


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="sample quality: classifier-FID and KID (offline), "
                                    "or Inception FID/KID/IS from a local weights file")
    p.add_argument("checkpoint")
    p.add_argument("--metric", nargs="+", default=["fid", "kid"],
                   help="fid and/or kid; 'is' as well with --inception-weights")
    p.add_argument("--n", type=_positive_int, default=1000, help="images generated")
    p.add_argument("--sampler", default="ddim", help="ddpm (all steps) or ddim")
    p.add_argument("--steps", type=_positive_int, default=50, help="DDIM steps")
    p.add_argument("--threshold", type=_positive_float, default=None,
                   help="threshold guidance: one threshold for every IF neuron")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=_positive_int, default=250, help="images per forward pass")
    p.add_argument("--classifier", default=None,
                   help="feature extractor (default: the shipped one; "
                        "scripts/train_classifier.py writes one)")
    p.add_argument("--inception-weights", default=None, metavar="FILE",
                   help="torch-fidelity's InceptionV3 weights "
                        "(weights-inception-2015-12-05-6726825d.pth): Inception features "
                        "instead of the classifier's")
    p.add_argument("--real-n", type=_positive_int, default=None,
                   help="real test images for the Inception statistics (default 10000)")
    p.add_argument("--data-dir", default=None, help="folder of the Fashion-MNIST idx files")
    p.add_argument("--out", default=None, help="also write the result JSON here")
    p.add_argument("--json", action="store_true", help="print JSON")


def _run_eval(args) -> None:
    from sddpm.evaluation import evaluate_checkpoint, save_result

    out = _writable_output(args.out, (".json",)) if args.out else None
    result = evaluate_checkpoint(args.checkpoint, n=args.n, sampler=args.sampler,
                                 steps=args.steps, threshold=args.threshold, seed=args.seed,
                                 batch=args.batch, classifier=args.classifier,
                                 metrics=args.metric, data_dir=args.data_dir,
                                 inception_weights=args.inception_weights,
                                 real_n=args.real_n, progress=not args.json)
    if out:
        save_result(result, out)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    kind = "Inception" if args.inception_weights else "classifier"
    parts = [f"{kind}-FID {result['fid']:.3f}" if "fid" in result else "",
             f"{kind}-KID {result['kid_mean']:.5f} +- {result['kid_std']:.5f}"
             if "kid_mean" in result else "",
             f"IS {result['is_mean']:.3f} +- {result['is_std']:.3f}"
             if "is_mean" in result else ""]
    if args.inception_weights:
        weights = "official" if result["official_weights"] else "NOT the official"
        where = (f"{weights} pt_inception-2015-12-05 weights, {result['real_images']} real "
                 f"test images; " + ("comparable to papers' Inception scores"
                                     if result["comparable_to_papers"] else
                                     "not comparable to papers (see README, Evaluation)"))
    else:
        where = (f"feature extractor: {result['feature_extractor']}, test accuracy "
                 f"{result['classifier_test_accuracy']:.4f}; not comparable to Inception FIDs")
    print(f"{result['arch']} {result['preset']}, {args.n} images ({result['sampler']}-"
          f"{result['sampler_steps']}): {', '.join(p for p in parts if p)} ({where})")


def _add_simulate(sub) -> None:
    from simulations.simulate import add_parser

    add_parser(sub, _positive_int)


def _run_simulate(args) -> None:
    from simulations.simulate import run

    run(args)


def _add_finetune(sub) -> None:
    from simulations.finetune import add_parser

    add_parser(sub, _positive_int)


def _run_finetune(args) -> None:
    from simulations.finetune import run

    run(args)


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="the main job on the shipped default (see README)")
    p.add_argument("--out", default="runs/demo", help="folder for every output")
    p.add_argument("--train-steps", type=_positive_int, default=100)
    p.add_argument("--denoise-steps", type=_positive_int, default=2,
                   help="DDIM steps simulated in Lava (floating point)")
    p.add_argument("--fixed-point-steps", type=_positive_int, default=1,
                   help="DDIM steps simulated in Lava's fixed point")


def _run_demo(args) -> None:
    from simulations.demo import run_demo

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


COMMANDS = {"train": (_add_train, _run_train), "sample": (_add_sample, _run_sample),
            "info": (_add_info, _run_info), "energy": (_add_energy, _run_energy),
            "eval": (_add_eval, _run_eval), "simulate": (_add_simulate, _run_simulate),
            "finetune": (_add_finetune, _run_finetune), "demo": (_add_demo, _run_demo)}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sddpm", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add, _ in COMMANDS.values():
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    keep_freed_memory()
    try:
        COMMANDS[args.command][1](args)
    except SddpmError as e:
        print(f"sddpm: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # disk full, permission denied, ...: the system's words suffice
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        print(f"sddpm: error: {e.strerror or e}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sddpm: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
