"""Models side by side at one sampler: classifier-FID/KID with bootstrap intervals,
precision/recall, paired FID differences and ratios, spike rates and energy per image,
and the held-out loss (``sddpm.evaluation.held_out_loss``: every model on the same test
images, steps and noise), also taken apart by noise level
(``held_out_loss_by_step``: where along the chain a model's error sits).

For the comparisons whose figures a paper would print: the SNN against its ANN twin
(the paper's FID ratio 21.38 / 20.24 = 1.06) and the pre-spike block against the
standard one (its Table 4). Every model samples from the same seed, so image i of each
starts from the same noise, and every pair is measured on the same bootstrap indices
(``sddpm.fid_kid.paired_difference`` and ``paired_ratio``).

Images are kept batch by batch under ``OUT/images/NAME-<weights digest>/``: a stopped
run, or one with a larger ``--n``, samples only what is missing, and a checkpoint whose
weights changed (a training run's ``last.pt``) gets new images instead of stale ones.
``--sample-only`` samples and stops; a second process with ``--sample-only --reverse``
shares the batches. Per model the table also carries what the checkpoint says of its
training (steps, block, learning rate).

    python scripts/compare_models.py NAME=CKPT NAME=CKPT ... [--pairs A/B ...]
        [--sampler dpm-solver++-10] [--n 2000] [--batch 50] [--out runs/compare]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sweep_samplers import RowImages, parse_row, sample_row
from sweep_table import load_rows, save_rows

from sddpm.allocator import keep_freed_memory
from sddpm.errors import SddpmError
from sddpm.files import atomic_path, write_json

METRIC_KEYS = ("fid", "fid_ci_low", "fid_ci_high", "kid_mean", "kid_ci_low", "kid_ci_high",
               "precision", "recall")


def parse_model(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path or "/" in name:
        raise SddpmError(f"model {text!r}: expected NAME=CHECKPOINT (e.g. "
                         "snn=checkpoints/fmnist-small-snn.pt)")
    if not Path(path).is_file():
        raise SddpmError(f"model {name}: no checkpoint at {path}")
    return name, Path(path)


def parse_pair(text: str, names) -> tuple[str, str]:
    a, sep, b = text.partition("/")
    if not sep or a not in names or b not in names or a == b:
        raise SddpmError(f"pair {text!r}: expected A/B with two of the models' names "
                         f"({', '.join(names)})")
    return a, b


def describe(path: Path) -> dict:
    """What a checkpoint says of itself: network, block, training steps and recipe, and
    the digest of its weights."""
    from sddpm.checkpoint import load_checkpoint, tensors_sha256
    from sddpm.presets import get_preset

    payload = load_checkpoint(path)
    train = payload.get("train_config") or {}
    model = payload.get("model_config") or {}
    preset = get_preset(train["preset"]) if train.get("preset") else None
    return {"checkpoint": str(path), "arch": payload["arch"],
            "block": model.get("block", "prespike") if payload["arch"] == "snn" else None,
            "step": payload.get("step"),
            # 0 in a train config means the preset's value
            "lr": train.get("lr") or (preset and preset.lr),
            "batch_size": train.get("batch_size") or (preset and preset.batch_size),
            "grad_clip": train.get("grad_clip"),
            "weights_sha256": payload.get("tensors_sha256") or tensors_sha256(payload)}


def compare_pair(a: dict, b: dict) -> dict:
    from sddpm.fid_kid import paired_difference, paired_ratio

    fid, kid, ratio = (paired_difference(a, b, "fid"), paired_difference(a, b, "kid"),
                       paired_ratio(a, b, "fid"))
    return {"fid_diff": fid["diff"], "fid_diff_ci": [fid["ci_low"], fid["ci_high"]],
            "kid_diff": kid["diff"], "kid_diff_ci": [kid["ci_low"], kid["ci_high"]],
            "fid_ratio": ratio["ratio"], "fid_ratio_ci": [ratio["ci_low"], ratio["ci_high"]]}


def markdown(models: list, pairs: list) -> str:
    lines = ["| model | network | steps | test loss | classifier-FID (95% interval) | "
             "classifier-KID (95% interval) | precision | recall | mean spike rate | mJ per image "
             "('paper' / 'strict') |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for m in models:
        net = m["arch"].upper() + (f" ({m['block']})" if m["block"] else "")
        rate = f"{m['mean_spike_rate']:.3f}" if m.get("mean_spike_rate") is not None else "-"
        lines.append(
            f"| {m['name']} | {net} | {m['step']} | {m['test_loss']:.4f} | {m['fid']:.2f} "
            f"[{m['fid_ci_low']:.2f}, {m['fid_ci_high']:.2f}] | {m['kid_mean']:.4f} "
            f"[{m['kid_ci_low']:.4f}, {m['kid_ci_high']:.4f}] | {m['precision']:.3f} | "
            f"{m['recall']:.3f} | {rate} | "
            f"{m['energy_paper_mJ_per_image']:.3f} / {m['energy_strict_mJ_per_image']:.3f} |")
    steps = [s for s, _ in models[0]["test_loss_by_step"]]
    lines += ["", f"Held-out loss by diffusion step t ({models[0]['loss_by_step_n']} test "
              "images, the same noise at every step):", "",
              "| model | " + " | ".join(f"t={s}" for s in steps) + " |",
              "|---|" + "---:|" * len(steps)]
    for m in models:
        lines.append(f"| {m['name']} | " + " | ".join(f"{v:.4f}" for _, v in
                                                     m["test_loss_by_step"]) + " |")
    if pairs:
        lines += ["", "| pair | FID ratio (paired 95% interval) | FID difference | "
                  "KID difference |", "|---|---:|---:|---:|"]
        for p in pairs:
            lines.append(
                f"| {p['a']} / {p['b']} | {p['fid_ratio']:.3f} [{p['fid_ratio_ci'][0]:.3f}, "
                f"{p['fid_ratio_ci'][1]:.3f}] | {p['fid_diff']:+.2f} [{p['fid_diff_ci'][0]:+.2f}, "
                f"{p['fid_diff_ci'][1]:+.2f}] | {p['kid_diff']:+.4f} "
                f"[{p['kid_diff_ci'][0]:+.4f}, {p['kid_diff_ci'][1]:+.4f}] |")
    return "\n".join(lines) + "\n"


def main() -> None:
    from sddpm.evaluation import (DEFAULT_CLASSIFIER, evaluate_images, held_out_loss,
                                  held_out_loss_by_step)
    from sddpm.hardware.reports import energy_per_image
    from sddpm.sampling import save_grid

    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("models", nargs="+", metavar="NAME=CHECKPOINT")
    parser.add_argument("--pairs", nargs="*", default=[], metavar="A/B",
                        help="pairs to compare (FID ratio A/B, differences A-B)")
    parser.add_argument("--sampler", default="dpm-solver++-10", metavar="SAMPLER-STEPS")
    parser.add_argument("--n", type=int, default=2000, help="images per model")
    parser.add_argument("--eval-n", type=int, default=None,
                        help="images each model is measured on (default: the fewest any has)")
    parser.add_argument("--bootstrap", type=int, default=500, help="bootstrap resamples")
    parser.add_argument("--profile-n", type=int, default=4,
                        help="images profiled for spike rates and energy")
    parser.add_argument("--loss-n", type=int, default=512,
                        help="test images the held-out loss is taken on")
    parser.add_argument("--loss-by-step-n", type=int, default=128,
                        help="test images the loss at each noise level is taken on")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--sample-only", action="store_true")
    parser.add_argument("--reverse", action="store_true",
                        help="sample the missing batches last first (a second process)")
    parser.add_argument("--out", default="runs/compare")
    args = parser.parse_args()
    keep_freed_memory()
    row = parse_row(args.sampler)
    if "@" in args.sampler:
        raise SddpmError("--sampler takes no threshold here: compare models as trained")
    models = dict(parse_model(m) for m in args.models)
    if len(models) != len(args.models):
        raise SddpmError("two models share a name; give each its own NAME=")
    pairs = [parse_pair(p, models) for p in args.pairs]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    info = {name: describe(path) for name, path in models.items()}
    images = {name: RowImages(out / "images" / f"{name}-{info[name]['weights_sha256'][:12]}"
                              / row["label"], args.seed, args.batch) for name in models}
    for name, path in models.items():
        sample_row(str(path), row, images[name], args.n, None, reverse=args.reverse)
    if args.sample_only:
        print(f"sampled {args.n} images per model into {out / 'images'}")
        return

    counts = {name: im.count() for name, im in images.items()}
    eval_n = args.eval_n or min(counts.values())
    if eval_n < 4 or eval_n > min(counts.values()):
        raise SddpmError(f"--eval-n {eval_n}: every model needs that many images (the fewest "
                         f"has {min(counts.values())}); rerun with --n {eval_n} or lower --eval-n")
    cache_path = out / "measured.json"
    cache = load_rows(cache_path) or {}
    rows, measured = [], {}
    for name in models:
        digest = info[name]["weights_sha256"]
        lkey = f"loss|{digest}|{args.seed}|{args.loss_n}"
        if lkey not in cache:
            cache[lkey] = held_out_loss(models[name], n=args.loss_n, seed=args.seed)
            save_rows(cache_path, cache)
        skey = f"loss-by-step|{digest}|{args.seed}|{args.loss_by_step_n}"
        if skey not in cache:
            # JSON keys are strings: keep the steps as a list of pairs
            cache[skey] = list(held_out_loss_by_step(models[name], n=args.loss_by_step_n,
                                                     seed=args.seed).items())
            save_rows(cache_path, cache)
        ekey = f"energy|{digest}|{row['label']}|{args.seed}|{args.profile_n}"
        if ekey not in cache:
            cache[ekey] = energy_per_image(models[name], sampler=row["sampler"],
                                           steps=row["steps"], n=args.profile_n, seed=args.seed)
            save_rows(cache_path, cache)
        mkey = f"metrics|{digest}|{row['label']}|{args.seed}|{args.batch}|{eval_n}|{args.bootstrap}"
        if mkey not in cache:
            cache[mkey] = evaluate_images(images[name].load(eval_n), DEFAULT_CLASSIFIER,
                                          bootstrap=args.bootstrap, keep_resamples=True)
            save_rows(cache_path, cache)
        measured[name] = cache[mkey]
        r = {"name": name, **info[name], "sampler": row["label"], "images": eval_n,
             "seed": args.seed, "bootstrap": args.bootstrap, "profile_n": args.profile_n,
             "test_loss": cache[lkey], "loss_n": args.loss_n,
             "test_loss_by_step": cache[skey], "loss_by_step_n": args.loss_by_step_n,
             **cache[ekey], **{k: cache[mkey][k] for k in METRIC_KEYS}}
        rows.append(r)
        grid = save_grid(images[name].load(min(64, eval_n)), out / f"grid-{name}.png", nrow=8)
        print(f"{name}: classifier-FID {r['fid']:.2f} [{r['fid_ci_low']:.2f}, "
              f"{r['fid_ci_high']:.2f}], precision {r['precision']:.3f}, recall "
              f"{r['recall']:.3f} at {eval_n} images; {r['energy_paper_mJ_per_image']:.3f} mJ "
              f"per image ('paper'); grid {grid}", flush=True)
    compared = [{"a": a, "b": b, **compare_pair(measured[a], measured[b])} for a, b in pairs]
    for p in compared:
        print(f"{p['a']} / {p['b']}: FID ratio {p['fid_ratio']:.3f} [{p['fid_ratio_ci'][0]:.3f}, "
              f"{p['fid_ratio_ci'][1]:.3f}], difference {p['fid_diff']:+.2f} "
              f"[{p['fid_diff_ci'][0]:+.2f}, {p['fid_diff_ci'][1]:+.2f}]")
    write_json(out / "compare.json", {"models": rows, "pairs": compared})
    with atomic_path(out / "compare.md") as tmp:
        Path(tmp).write_text(markdown(rows, compared))
    print(f"wrote {out}/compare.json, compare.md and grid-*.png")


if __name__ == "__main__":
    import sys

    from sddpm.command_line import run_command

    sys.exit(run_command("compare_models.py", main))
