"""The model side's sub-commands of ``sddpm``: train, sample, info, convert, recalibrate, eval.

Each is an ``add_<name>(subparsers)`` that declares its options and a
``run_<name>(args)`` that turns them into keyword arguments of the library; the
dispatcher (:mod:`sddpm.cli.main`) puts them beside the other stages' commands.
Importing this module loads argparse and the presets only: ``sddpm train --help``
stays light.
"""

from __future__ import annotations

import json
from pathlib import Path

from sddpm.command_line import positive_float, positive_int
from sddpm.errors import SddpmError
from sddpm.files import atomic_path, readable_file
from sddpm.outputs import writable_file
from sddpm.presets import ARCHS, PRESETS
from sddpm.sampler_table import SCHEDULERS

SAMPLER_HELP = ("ddpm (ours, all 1000 steps), ddim (ours), or diffusers' "
                + ", ".join(SCHEDULERS))
THRESHOLD_HELP = ("threshold guidance: one threshold for every IF neuron (0.998), or a "
                  "JSON map of population patterns to thresholds, as a file or inline "
                  "('{\"up.*\": 0.998}'); unmatched populations keep 1.0")
# torchrun's own parser reads '--n' after the script as an ambiguous abbreviation of its
# --nnodes/--nproc-per-node/--node-rank and stops; '--images' passes through it
TORCHRUN_N = "--images is the same; use it under torchrun, which takes --n for its own"
STEPS_HELP = "denoising steps of every sampler but ddpm (a second-order one calls more)"


def add_train(sub) -> None:
    p = sub.add_parser("train", help="train a spiking U-Net or its ANN twin")
    p.add_argument("--preset", default="fmnist-small", help=f"one of {', '.join(PRESETS)}")
    p.add_argument("--arch", default="snn", help="snn (spiking U-Net) or ann (DDPM twin)")
    p.add_argument("--neuron", default="snntorch", help="snntorch, snntorch-loop or norse")
    p.add_argument("--timesteps", "-T", type=positive_int, default=4, help="spiking timesteps")
    p.add_argument("--block", default="prespike",
                   help="spiking residual block: prespike (the paper's) or standard "
                        "(conv-BN-spike with spiking shortcuts, the paper's Table 4 ablation)")
    p.add_argument("--steps", type=positive_int, default=1000, help="optimizer steps in all")
    p.add_argument("--batch-size", type=positive_int, default=0, help="global batch (preset's)")
    p.add_argument("--lr", type=positive_float, default=0.0, help="Adam learning rate (preset's)")
    p.add_argument("--warmup", type=int, default=200, help="linear lr warm-up steps")
    p.add_argument("--ema", type=float, default=0.999, help="EMA decay; 0 disables EMA")
    p.add_argument("--grad-clip", type=positive_float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ckpt-every", type=positive_int, default=500)
    p.add_argument("--sample-every", type=positive_int, default=1000)
    p.add_argument("--data-dir", default="", help="folder of the data set files")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--out", default="runs/train", help="output folder")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")


def run_train(args) -> None:
    from sddpm.distributed import exit_distributed
    from sddpm.train import TrainConfig, Trainer

    config = TrainConfig(
        preset=args.preset, arch=args.arch, neuron=args.neuron, timesteps=args.timesteps,
        block=args.block, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
        warmup=args.warmup,
        ema_decay=args.ema, grad_clip=args.grad_clip, seed=args.seed,
        ckpt_every=args.ckpt_every, sample_every=args.sample_every, data_dir=args.data_dir,
        out=args.out, device=args.device,
    )
    trainer = Trainer(config, resume=args.resume)
    loss = trainer.run()
    if trainer.rank == 0:
        print(f"trained {config.arch} {config.preset} to step {trainer.step}, "
              f"last loss {loss:.4f}; checkpoint {Path(config.out) / 'last.pt'}")
    # under torchrun: the ranks met at the trainer's last barrier, the checkpoint is written
    exit_distributed()


def threshold_option(args):
    """``--threshold`` parsed (a number or a map), ``None`` when not given."""
    from sddpm.neurons import parse_threshold

    return None if args.threshold is None else parse_threshold(args.threshold)


def add_sample(sub) -> None:
    p = sub.add_parser("sample", help="generate images from a checkpoint")
    p.add_argument("checkpoint")
    p.add_argument("--n", "--images", dest="n", type=positive_int, default=64,
                   help=f"number of images ({TORCHRUN_N})")
    p.add_argument("--sampler", default="ddpm", help=SAMPLER_HELP)
    p.add_argument("--steps", type=positive_int, default=50, help=STEPS_HELP)
    p.add_argument("--eta", type=float, default=0.0, help="DDIM stochasticity")
    p.add_argument("--threshold", default=None, metavar="T|MAP", help=THRESHOLD_HELP)
    p.add_argument("--neuron", default=None, help="run with another neuron backend")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=positive_int, default=64, help="images per forward pass")
    p.add_argument("--no-ema", action="store_true", help="use the raw, not the EMA, weights")
    p.add_argument("--device", default="cpu",
                   help="cpu, cuda, cuda:N or auto (under torchrun: each process its GPU)")
    p.add_argument("--out", default="samples.png", help="PNG grid")
    p.add_argument("--npz", default=None, help="also save uint8 images [N,H,W,C] here")


def run_sample(args) -> None:
    import numpy as np

    from sddpm.diffusion import check_sampler
    from sddpm.distributed import exit_distributed, init_distributed, leave_distributed
    from sddpm.sampling import sample_checkpoint, save_grid, to_uint8

    check_sampler(args.sampler)
    if not 0 <= args.eta <= 1:
        raise SddpmError(f"--eta must lie in [0, 1] (0: deterministic DDIM), got {args.eta}")
    grid_path = writable_file(args.out, (".png", ".jpg", ".jpeg"))
    npz_path = writable_file(args.npz, (".npz",)) if args.npz else None
    rank, _, device = init_distributed(args.device)
    images, _, _ = sample_checkpoint(
        args.checkpoint, n=args.n, sampler=args.sampler, steps=args.steps, eta=args.eta,
        seed=args.seed, batch=args.batch, device=device, use_ema=not args.no_ema,
        neuron=args.neuron, threshold=threshold_option(args), shard=True)
    leave_distributed()
    if rank == 0:
        print(f"wrote {save_grid(images, grid_path)}")
        if npz_path:
            with atomic_path(npz_path) as tmp, open(tmp, "wb") as f:
                np.savez_compressed(f, images=to_uint8(images))
            print(f"wrote {npz_path}")
    exit_distributed()


def add_info(sub) -> None:
    p = sub.add_parser("info", help="parameters and dense MACs of a preset or a checkpoint")
    p.add_argument("checkpoint", nargs="?", default=None,
                   help="a checkpoint (its model config) instead of --preset")
    p.add_argument("--preset", default="cifar10", help=f"one of {', '.join(PRESETS)}")
    p.add_argument("--arch", default="snn", help=f"one of {', '.join(ARCHS)}")
    p.add_argument("--timesteps", "-T", type=positive_int, default=None)
    p.add_argument("--json", action="store_true", help="print JSON")


def run_info(args) -> None:
    from sddpm.models import build_model, count_macs, count_params
    from sddpm.presets import ModelConfig, check_arch, get_preset

    source = None
    if args.checkpoint:
        from sddpm.sampling import model_from_checkpoint

        model, payload = model_from_checkpoint(args.checkpoint)
        config, args.arch = ModelConfig.from_dict(payload["model_config"]), payload["arch"]
        source = payload.get("converted_from")
        if args.timesteps is not None and args.timesteps != config.timesteps:
            raise SddpmError(f"{args.checkpoint} runs T = {config.timesteps}; drop --timesteps "
                             "(convert again with --timesteps for another T)")
    else:
        config = get_preset(args.preset)
        if args.timesteps is not None:
            config = config.with_timesteps(args.timesteps)
        model = build_model(config, check_arch(args.arch))
    info = {"preset": config.name, "arch": args.arch, "params": count_params(model),
            **count_macs(model, config), "config": config.to_dict()}
    if args.checkpoint:
        info["checkpoint"] = args.checkpoint
        info["integrity"] = payload["integrity"]  # "verified", or "absent" in older files
        info["converted_from"] = source
        info["bn_recalibration"] = payload.get("bn_recalibration")
    if args.arch == "snn":
        info["timesteps"] = config.timesteps
        info["macs_unit"] = "per spiking timestep, batch 1"
    else:
        info["macs_unit"] = "per forward, batch 1"
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        rule = f", fires on v {config.fires_on} threshold" if args.arch == "snn" else ""
        print(f"{config.name} {args.arch}: {info['params']:,} parameters, "
              f"{info['macs_per_forward'] / 1e9:.4f} G MACs ({info['macs_unit']}){rule}")
        if source:
            print(f"converted from {source['file']} (sha256 {source['sha256']}), "
                  f"{source['layout']}")


def add_convert(sub) -> None:
    p = sub.add_parser("convert", help="an official SDDPM checkpoint as an sddpm checkpoint")
    p.add_argument("input", help="the official checkpoint (.pt or .safetensors)")
    p.add_argument("--from", dest="source", required=True,
                   help="the code that wrote it: sddpm-reference (github AndyCao1125/SDDPM)")
    p.add_argument("-o", "--output", required=True, help="the sddpm checkpoint to write (.pt)")
    p.add_argument("--timesteps", "-T", type=int, default=4,
                   help="spiking timesteps T it was trained with (not in the file; paper: 4)")
    p.add_argument("--image-size", type=positive_int, default=32,
                   help="image side it was trained on (the official --img_size)")
    p.add_argument("--dataset", default=None,
                   help="sddpm data set name (default: cifar10 for RGB, fmnist for grey)")
    p.add_argument("--json", action="store_true", help="print the conversion record as JSON")


def run_convert(args) -> None:
    from sddpm.checkpoint import save_checkpoint
    from sddpm.reference_checkpoint import SOURCE, convert_reference_checkpoint, format_summary

    if args.source != SOURCE:
        raise SddpmError(f"--from {args.source!r} is not known; the one source is {SOURCE} "
                         "(checkpoints of github.com/AndyCao1125/SDDPM)")
    readable_file(args.input, "checkpoint", "give the official checkpoint file (.pt or "
                  ".safetensors)")
    out = writable_file(args.output, (".pt",))
    if Path(args.input).resolve() == out.resolve():
        raise SddpmError("-o names the input file; write the sddpm checkpoint elsewhere")
    payload = convert_reference_checkpoint(args.input, timesteps=args.timesteps,
                                           image_size=args.image_size, dataset=args.dataset)
    save_checkpoint(payload, out)
    if args.json:
        print(json.dumps({"output": str(out), "fires_on": payload["model_config"]["fires_on"],
                          "model_config": payload["model_config"],
                          **payload["converted_from"]}, indent=2))
    else:
        print(format_summary(payload, out))


def add_recalibrate(sub) -> None:
    p = sub.add_parser("recalibrate", help="measure a checkpoint's BatchNorm statistics for its "
                                           "EMA weights (files trained before sddpm did)")
    p.add_argument("checkpoint", help="an sddpm checkpoint with BatchNorm (a spiking U-Net)")
    p.add_argument("-o", "--output", required=True, help="the checkpoint to write (.pt)")
    p.add_argument("--images", type=positive_int, default=512,
                   help="training images, each noised at a random diffusion step")
    p.add_argument("--batch", type=positive_int, default=32, help="images per forward pass")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default="", help="folder of the data set files")


def run_recalibrate(args) -> None:
    from sddpm.batch_norm import Recalibration
    from sddpm.checkpoint import load_checkpoint, save_checkpoint
    from sddpm.recalibration import recalibrate_checkpoint

    out = writable_file(args.output, (".pt",))
    if Path(args.checkpoint).resolve() == out.resolve():
        raise SddpmError("-o names the input file; write the recalibrated checkpoint elsewhere "
                         "(the original stays as it was)")
    payload = load_checkpoint(args.checkpoint)
    how = Recalibration(images=args.images, batch=args.batch, seed=args.seed)
    payload = recalibrate_checkpoint(payload, args.checkpoint, how,
                                     data_dir=args.data_dir or None)
    save_checkpoint(payload, out)
    record = payload["bn_recalibration"]
    section = ("EMA" if payload.get("ema") is not None
               else "shipped EMA" if payload.get("shipped_from_ema") else "model")
    print(f"wrote {out}: the {section} weights' BatchNorm statistics measured on "
          f"{record['images']} training images (batches of {record['batch']}, seed "
          f"{record['seed']}); no weight changed")


def add_eval(sub) -> None:
    p = sub.add_parser("eval", help="sample quality: classifier-FID, KID, precision/recall "
                                    "(offline), or Inception FID/KID/IS from a local "
                                    "weights file")
    p.add_argument("checkpoint")
    p.add_argument("--metric", nargs="+", default=["fid", "kid", "prc"],
                   help="fid, kid, prc (precision/recall); 'is' as well with "
                        "--inception-weights")
    p.add_argument("--n", "--images", dest="n", type=positive_int, default=1000,
                   help=f"images generated ({TORCHRUN_N})")
    p.add_argument("--sampler", default="ddim", help=SAMPLER_HELP)
    p.add_argument("--steps", type=positive_int, default=50, help=STEPS_HELP)
    p.add_argument("--bootstrap", type=positive_int, default=None, metavar="N",
                   help="95%% intervals of FID and KID from N bootstrap resamples of the "
                        "generated images (500 is usual)")
    p.add_argument("--threshold", default=None, metavar="T|MAP", help=THRESHOLD_HELP)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=positive_int, default=250, help="images per forward pass")
    p.add_argument("--classifier", default=None,
                   help="feature extractor (default: the shipped one; "
                        "scripts/train_classifier.py writes one)")
    p.add_argument("--inception-weights", default=None, metavar="FILE",
                   help="torch-fidelity's InceptionV3 weights "
                        "(weights-inception-2015-12-05-6726825d.pth): Inception features "
                        "instead of the classifier's")
    p.add_argument("--real-n", type=positive_int, default=None,
                   help="real test images for the Inception statistics (default 10000)")
    p.add_argument("--data-dir", default=None, help="folder of the Fashion-MNIST idx files")
    p.add_argument("--device", default="cpu",
                   help="where the images are sampled: cpu, cuda, cuda:N or auto (under "
                        "torchrun: each process its GPU, the metrics once)")
    p.add_argument("--out", default=None, help="also write the result JSON here")
    p.add_argument("--json", action="store_true", help="print JSON")


def run_eval(args) -> None:
    from sddpm.distributed import exit_distributed, init_distributed
    from sddpm.evaluation import evaluate_checkpoint

    out = writable_file(args.out, (".json",)) if args.out else None
    _, world, device = init_distributed(args.device)
    result = evaluate_checkpoint(args.checkpoint, n=args.n, sampler=args.sampler,
                                 steps=args.steps, threshold=threshold_option(args),
                                 seed=args.seed, batch=args.batch, classifier=args.classifier,
                                 metrics=args.metric, data_dir=args.data_dir,
                                 inception_weights=args.inception_weights,
                                 real_n=args.real_n, bootstrap=args.bootstrap or 0,
                                 progress=not args.json, device=device, shard=True)
    if result is not None:  # None: another rank measures and writes
        result["processes"] = world
        _report_eval(result, out, args)
    exit_distributed()


def _report_eval(result: dict, out, args) -> None:
    from sddpm.evaluation import save_result

    if out:
        save_result(result, out)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    kind = "Inception" if args.inception_weights else "classifier"
    ci = (lambda m: f" [{result[m + '_ci_low']:.3f}, {result[m + '_ci_high']:.3f}]"
          if m + "_ci_low" in result else "")
    parts = [f"{kind}-FID {result['fid']:.3f}{ci('fid')}" if "fid" in result else "",
             f"{kind}-KID {result['kid_mean']:.5f} +- {result['kid_std']:.5f}{ci('kid')}"
             if "kid_mean" in result else "",
             f"IS {result['is_mean']:.3f} +- {result['is_std']:.3f}"
             if "is_mean" in result else "",
             f"precision {result['precision']:.3f}, recall {result['recall']:.3f}"
             if "precision" in result else ""]
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
          f"{result['sampler_steps']}, {result['network_calls']} network calls each): "
          f"{', '.join(p for p in parts if p)} ({where})")
