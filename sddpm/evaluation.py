"""Sample quality offline: FID and KID in the feature space of the project's classifier.

The statistics (torch-fidelity's FID and KID estimators) compare generated images with
the 10,000 real Fashion-MNIST test images, whose features are cached next to the
classifier. These numbers rank our own models; they are not Inception FIDs and do not
compare with the papers' (see README, "Evaluation").
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from sddpm.classifier import load_classifier
from sddpm.data import load_dataset
from sddpm.errors import SddpmError

METRICS = ("fid", "kid")
DEFAULT_CLASSIFIER = Path(__file__).resolve().parents[1] / "checkpoints" / "fmnist-classifier.pt"


@torch.no_grad()
def classifier_features(classifier, images: torch.Tensor, batch: int = 500) -> torch.Tensor:
    """``[N, 128]`` float64 features of images ``[N, 1, 32, 32]`` in [-1, 1]."""
    chunks = [classifier.features(images[i:i + batch].float())
              for i in range(0, len(images), batch)]
    return torch.cat(chunks).double()


def real_features(classifier_path, data_dir=None) -> torch.Tensor:
    """Features of the real test set, cached beside the classifier (keyed by its hash)."""
    path = Path(classifier_path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    cache = path.with_name(f"{path.stem}.test-features-{digest}.npy")
    if cache.is_file():
        return torch.from_numpy(np.load(cache))
    classifier, _ = load_classifier(path)
    test = load_dataset("fmnist", image_size=32, data_dir=data_dir, split="test")
    feats = classifier_features(classifier, test.batch(np.arange(len(test))))
    try:
        np.save(cache, feats.numpy())
    except OSError:
        pass  # a read-only checkout still evaluates, only without the cache
    return feats


def fid_kid(generated: torch.Tensor, real: torch.Tensor, metrics=METRICS,
            kid_subset_size: int = 1000, seed: int = 0) -> dict:
    """torch-fidelity's estimators on two feature sets ``[N, D]``."""
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
    from torch_fidelity.metric_kid import kid_features_to_metric

    unknown = set(metrics) - set(METRICS)
    if unknown:
        raise SddpmError(f"unknown metric {sorted(unknown)[0]!r}; expected fid or kid")
    out = {}
    if "fid" in metrics:
        if len(generated) < 2:
            raise SddpmError("FID needs at least 2 images; raise --n")
        stats = [fid_features_to_statistics(f) for f in (generated, real)]
        out["fid"] = fid_statistics_to_metric(*stats, verbose=False)["frechet_inception_distance"]
    if "kid" in metrics:
        size = min(kid_subset_size, len(generated), len(real))
        # torch-fidelity's defaults: cubic polynomial kernel, gamma 1/D, coef0 1
        kid = kid_features_to_metric(generated, real, kid_subsets=100, kid_subset_size=size,
                                     rng_seed=seed, verbose=False)
        out["kid_mean"] = kid["kernel_inception_distance_mean"]
        out["kid_std"] = kid["kernel_inception_distance_std"]
        out["kid_subset_size"] = size
    return out


def evaluate_images(images: torch.Tensor, classifier_path, metrics=METRICS,
                    data_dir=None) -> dict:
    classifier, info = load_classifier(classifier_path)
    generated = classifier_features(classifier, images)
    result = fid_kid(generated, real_features(classifier_path, data_dir), metrics)
    result.update({"images": len(images), "feature_extractor": str(classifier_path),
                   "classifier_test_accuracy": info.get("test_accuracy"),
                   "comparable_to_papers": False})
    return result


def save_result(result: dict, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


def evaluate_checkpoint(checkpoint, *, n: int, sampler: str = "ddim", steps: int = 50,
                        threshold: float | None = None, seed: int = 0, batch: int = 250,
                        classifier=None, metrics=METRICS, data_dir=None,
                        inception_weights=None, real_n: int | None = None,
                        progress: bool = True) -> dict:
    """Generate ``n`` images from a checkpoint and measure them (see :func:`fid_kid`).

    With ``inception_weights`` the features are torch-fidelity's InceptionV3 instead of
    the classifier's, and ``metrics`` may include ``is`` (:mod:`sddpm.inception`).
    """
    import time

    from sddpm.diffusion import SAMPLERS, GaussianDiffusion
    from sddpm.presets import ModelConfig
    from sddpm.sampling import model_from_checkpoint, sample_images

    classifier_given = classifier is not None
    classifier = Path(classifier or DEFAULT_CLASSIFIER)
    if sampler not in SAMPLERS:
        raise SddpmError(f"unknown sampler {sampler!r}; choose 'ddpm' or 'ddim'")
    inception = None
    if inception_weights is not None:
        from sddpm.inception import (PAPER_SCALE_IMAGES, check_inception_metrics,
                                     load_inception, real_test_set, weights_digest)

        check_inception_metrics(metrics)
        if classifier_given:
            raise SddpmError("--classifier and --inception-weights choose the features two "
                             "ways; pass one")
        # checked before sampling, which is the long part
        inception, digest = load_inception(inception_weights), weights_digest(inception_weights)
        if {"fid", "kid"} & set(metrics):
            real_test_set(real_n or PAPER_SCALE_IMAGES, data_dir)
    else:
        if "is" in metrics:
            raise SddpmError("the Inception Score needs Inception's logits; pass "
                             "--inception-weights FILE")
        unknown = [m for m in metrics if m not in METRICS]
        if unknown:
            raise SddpmError(f"unknown metric {unknown[0]!r}; expected fid and/or kid")
        if real_n is not None:
            raise SddpmError("--real-n applies to Inception metrics only; the classifier "
                             "metrics use the whole test set")
        if not classifier.is_file():
            raise SddpmError(f"no classifier at {classifier}; train one with "
                             "'python scripts/train_classifier.py' or pass --classifier")
    model, payload = model_from_checkpoint(checkpoint, threshold=threshold)
    config = ModelConfig.from_dict(payload["model_config"])
    if config.dataset != "fmnist":
        raise SddpmError(f"the metrics compare with the Fashion-MNIST test set; "
                         f"{checkpoint} was trained on {config.dataset}")
    t0 = time.perf_counter()
    images = sample_images(model, GaussianDiffusion(config.diffusion_steps), config, n=n,
                           sampler=sampler, steps=steps, seed=seed, batch=batch,
                           progress=progress)
    if inception is None:
        result = evaluate_images(images, classifier, metrics, data_dir)
    else:
        from sddpm.inception import evaluate_with_inception

        result = evaluate_with_inception(images, inception, digest, metrics,
                                         real_n or PAPER_SCALE_IMAGES, data_dir, progress)
    result.update({"checkpoint": str(checkpoint), "arch": payload["arch"],
                   "preset": config.name, "trained_steps": payload["step"],
                   "sampler": sampler,
                   "sampler_steps": steps if sampler == "ddim" else config.diffusion_steps,
                   "threshold": threshold, "seed": seed,
                   "seconds": round(time.perf_counter() - t0, 1)})
    return result
