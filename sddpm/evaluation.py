"""Sample quality offline: FID and KID in the feature space of the project's classifier.

The statistics (torch-fidelity's FID and KID estimators) compare generated images with
the 10,000 real Fashion-MNIST test images, whose features are cached next to the
classifier. These numbers rank our own models; they are not Inception FIDs and do not
compare with the papers' (see README, "Evaluation").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sddpm.classifier import load_classifier
from sddpm.data import load_dataset
from sddpm.errors import SddpmError
from sddpm.fid_kid import METRICS, PRC_NEIGHBOURHOOD, bootstrap_intervals, fid_kid
from sddpm.files import cached_array, file_sha256, write_json
from sddpm.shipped import CLASSIFIER, shipped_path

DEFAULT_CLASSIFIER = shipped_path(CLASSIFIER)


@torch.no_grad()
def classifier_features(classifier, images: torch.Tensor, batch: int = 500) -> torch.Tensor:
    """``[N, 128]`` float64 features of images ``[N, 1, 32, 32]`` in [-1, 1]."""
    chunks = [classifier.features(images[i:i + batch].float())
              for i in range(0, len(images), batch)]
    return torch.cat(chunks).double()


def real_features(classifier_path, data_dir=None) -> torch.Tensor:
    """Features of the real test set, cached per classifier (keyed by its hash) in
    :func:`sddpm.files.cache_dir`: never beside the classifier, which may be installed
    read-only."""
    path = Path(classifier_path)

    def compute() -> np.ndarray:
        classifier, _ = load_classifier(path)
        test = load_dataset("fmnist", image_size=32, data_dir=data_dir, split="test")
        return classifier_features(classifier, test.batch(np.arange(len(test)))).numpy()

    name = f"classifier-{file_sha256(path)[:16]}-fmnist-test.npy"
    return torch.from_numpy(cached_array(name, compute))


def evaluate_images(images: torch.Tensor, classifier_path, metrics=METRICS,
                    data_dir=None, bootstrap: int = 0, keep_resamples: bool = False) -> dict:
    """FID/KID of ``images``; with ``bootstrap`` resamples, their 95% intervals too (and
    the resampled values with ``keep_resamples``, for paired differences)."""
    classifier, info = load_classifier(classifier_path)
    generated = classifier_features(classifier, images)
    real = real_features(classifier_path, data_dir)
    result = fid_kid(generated, real, metrics)
    if bootstrap:
        if not {"fid", "kid"} <= set(metrics):
            raise SddpmError("--bootstrap gives intervals for both FID and KID; measure both")
        result.update(bootstrap_intervals(generated, real, result, resamples=bootstrap,
                                          keep_resamples=keep_resamples))
    result.update({"images": len(images), "feature_extractor": str(classifier_path),
                   "classifier_test_accuracy": info.get("test_accuracy"),
                   "comparable_to_papers": False})
    return result


def save_result(result: dict, path) -> Path:
    return write_json(path, result)


def evaluate_checkpoint(checkpoint, *, n: int, sampler: str = "ddim", steps: int = 50,
                        threshold: float | None = None, seed: int = 0, batch: int = 250,
                        classifier=None, metrics=METRICS, data_dir=None,
                        inception_weights=None, real_n: int | None = None,
                        bootstrap: int = 0, progress: bool = True, device="cpu",
                        shard: bool = False) -> dict | None:
    """Generate ``n`` images from a checkpoint and measure them (see :func:`fid_kid`).

    With ``inception_weights`` the features are torch-fidelity's InceptionV3 instead of
    the classifier's, and ``metrics`` may include ``is`` (:mod:`sddpm.inception`).
    ``bootstrap`` resamples add intervals to the classifier metrics. ``shard``: called by
    every process of a ``torchrun`` group, which share the sampling and then leave the
    group (measuring may outlast its timeout); rank 0 measures the gathered images and
    returns the result, the others return ``None``.
    """
    import time

    from sddpm.diffusion import GaussianDiffusion, call_schedule, check_sampler
    from sddpm.distributed import leave_distributed, rank
    from sddpm.presets import ModelConfig
    from sddpm.sampling import model_from_checkpoint, sample_images

    classifier_given = classifier is not None
    classifier = Path(classifier or DEFAULT_CLASSIFIER)
    check_sampler(sampler)
    inception = None
    if inception_weights is not None:
        from sddpm.inception import (
            PAPER_SCALE_IMAGES,
            check_inception_metrics,
            load_inception,
            real_test_set,
        )

        check_inception_metrics(metrics)
        if bootstrap:
            raise SddpmError("--bootstrap applies to the classifier metrics; drop it or "
                             "--inception-weights")
        if classifier_given:
            raise SddpmError("--classifier and --inception-weights choose the features two "
                             "ways; pass one")
        # checked before sampling, which is the long part
        inception, digest = load_inception(inception_weights), file_sha256(inception_weights)
        if {"fid", "kid", "prc"} & set(metrics):
            real_test_set(real_n or PAPER_SCALE_IMAGES, data_dir)
    else:
        if "is" in metrics:
            raise SddpmError("the Inception Score needs Inception's logits; pass "
                             "--inception-weights FILE")
        unknown = [m for m in metrics if m not in METRICS]
        if unknown:
            raise SddpmError(f"unknown metric {unknown[0]!r}; expected fid, kid and/or prc")
        if real_n is not None:
            raise SddpmError("--real-n applies to Inception metrics only; the classifier "
                             "metrics use the whole test set")
        if not classifier.exists():
            raise SddpmError(f"no classifier at {classifier}; train one with "
                             "'python scripts/train_classifier.py' or pass --classifier")
        load_classifier(classifier)  # read and checked now, not after minutes of sampling
    model, payload = model_from_checkpoint(checkpoint, threshold=threshold)
    config = ModelConfig.from_dict(payload["model_config"])
    if "prc" in metrics and min(n, real_n or n) <= PRC_NEIGHBOURHOOD:
        raise SddpmError(f"precision/recall need more than {PRC_NEIGHBOURHOOD} images "
                         "(k-NN balls); raise --n (and --real-n) or drop prc")
    if config.dataset != "fmnist":
        raise SddpmError(f"the metrics compare with the Fashion-MNIST test set; "
                         f"{checkpoint} was trained on {config.dataset}")
    measures = not shard or rank() == 0
    if inception is None and measures:  # the test set read (features cached) before sampling
        real_features(classifier, data_dir)
    diffusion = GaussianDiffusion(config.diffusion_steps).to(device)
    calls = len(call_schedule(diffusion, sampler, steps))
    t0 = time.perf_counter()
    images = sample_images(model.to(device), diffusion, config, n=n, sampler=sampler,
                           steps=steps, seed=seed, device=device, batch=batch,
                           progress=progress, shard=shard)
    if shard:
        leave_distributed()
    if not measures:
        return None
    if inception is None:
        result = evaluate_images(images, classifier, metrics, data_dir, bootstrap)
    else:
        from sddpm.inception import evaluate_with_inception

        result = evaluate_with_inception(images, inception, digest, metrics,
                                         real_n or PAPER_SCALE_IMAGES, data_dir, progress)
    result.update({"checkpoint": str(checkpoint), "arch": payload["arch"],
                   "preset": config.name, "trained_steps": payload["step"],
                   "sampler": sampler,
                   "sampler_steps": calls if sampler == "ddpm" else steps,
                   "network_calls": calls,
                   "threshold": threshold, "seed": seed,
                   "seconds": round(time.perf_counter() - t0, 1)})
    return result


@torch.no_grad()
def held_out_loss(checkpoint, *, n: int = 512, seed: int = 0, batch: int = 64,
                  data_dir=None) -> float:
    """The training objective (epsilon-MSE, Algorithm 1) of a checkpoint's network (EMA
    weights) on the first ``n`` test images of its data set, with ``t`` and the noise drawn
    from ``seed``.

    Every checkpoint of a data set meets the same images, steps and noise, so two models'
    losses compare directly; the training log's losses cannot, being each model's own
    batches at weights that moved on after every step.
    """
    model, diffusion, x_0 = _network_and_test_images(checkpoint, n, data_dir)
    generator = torch.Generator().manual_seed(seed)
    total = 0.0
    for start in range(0, n, batch):
        x = x_0[start:start + batch]
        total += diffusion.loss(model, x, generator=generator).item() * len(x)
    return total / n


def _network_and_test_images(checkpoint, n: int, data_dir):
    """A checkpoint's network (EMA weights), its diffusion chain and the first ``n`` test
    images of its data set."""
    from sddpm.diffusion import GaussianDiffusion
    from sddpm.presets import ModelConfig
    from sddpm.sampling import model_from_checkpoint

    model, payload = model_from_checkpoint(checkpoint)
    config = ModelConfig.from_dict(payload["model_config"])
    test = load_dataset(config.dataset, image_size=config.image_size, data_dir=data_dir,
                        split="test")
    if not 0 < n <= len(test):
        raise SddpmError(f"a held-out loss on {n} images: the {config.dataset} test set has "
                         f"{len(test)}; pick 1 to {len(test)}")
    return model, GaussianDiffusion(config.diffusion_steps), test.batch(np.arange(n))


# Where a network's error sits along the chain: the noisiest steps decide a sample's
# global layout (and so its diversity), the cleanest its texture.
NOISE_LEVEL_STEPS = (0, 10, 50, 100, 200, 400, 600, 800, 999)


@torch.no_grad()
def loss_by_noise_level(model, diffusion, x_0: torch.Tensor, steps, *, seed: int = 0,
                        batch: int = 64) -> dict[int, float]:
    """Epsilon-MSE of ``model`` on ``x_0`` at each diffusion step of ``steps``, with the
    same noise at every step (drawn from ``seed``), so that one curve varies in ``t`` only."""
    bad = [s for s in steps if not 0 <= s < diffusion.num_steps]
    if bad:
        raise SddpmError(f"diffusion steps {bad}: the chain has steps 0 to "
                         f"{diffusion.num_steps - 1}")
    eps = torch.randn(x_0.shape, generator=torch.Generator().manual_seed(seed),
                      dtype=x_0.dtype)
    losses = {}
    for step in steps:
        total = 0.0
        for i in range(0, len(x_0), batch):
            x, e = x_0[i:i + batch], eps[i:i + batch]
            t = torch.full((len(x),), step, dtype=torch.long)
            total += torch.nn.functional.mse_loss(model(diffusion.q_sample(x, t, e), t), e,
                                                  reduction="sum").item()
        losses[int(step)] = total / eps.numel()
    return losses


def held_out_loss_by_step(checkpoint, *, steps=NOISE_LEVEL_STEPS, n: int = 128,
                          seed: int = 0, batch: int = 64, data_dir=None) -> dict[int, float]:
    """:func:`loss_by_noise_level` of a checkpoint's network (EMA weights) on the first
    ``n`` test images of its data set: the held-out loss taken apart by noise level."""
    model, diffusion, x_0 = _network_and_test_images(checkpoint, n, data_dir)
    return loss_by_noise_level(model, diffusion, x_0, steps, seed=seed, batch=batch)
