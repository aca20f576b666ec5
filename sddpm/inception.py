"""Inception FID, KID and IS through torch-fidelity, from a weights file the user supplies.

torch-fidelity downloads its InceptionV3 (the TF-2015 graph every paper's FID uses)
from GitHub; this machine class has no such access, so the user passes the file
(``weights-inception-2015-12-05-6726825d.pth``, fetched once on a connected machine).
torch-fidelity would unpickle that file with ``weights_only=False``, which runs any code
the file carries; we load it with ``weights_only=True`` (TorchScript archives refused
first, see :func:`sddpm.checkpoint.load_tensors`) and hand torch-fidelity a copy
re-saved from the verified tensors.

Images: our [-1, 1] grey 32x32 samples become uint8 RGB (the grey channel three
times); torch-fidelity resizes to 299x299 inside the extractor as it does for its own
inputs. The reference is the Fashion-MNIST test set, padded to 32x32 like the training
data, so even with the official weights these FIDs differ from papers that resize
28x28 images or compare against the training set (README, "Evaluation").
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from sddpm.checkpoint import load_tensors
from sddpm.errors import SddpmError
from sddpm.fid_kid import fid_kid
from sddpm.files import cached_array

INCEPTION_METRICS = ("fid", "kid", "prc", "is")
# torch-fidelity names its release file by the first hex digits of its SHA-256
OFFICIAL_SHA256_PREFIX = "6726825d"
PAPER_SCALE_IMAGES = 10_000
# torch-fidelity's default seed for the KID subsets and the IS shuffle: our numbers then
# equal its command line's on the same features
FIDELITY_SEED = 2020


def load_inception(weights_path):
    """torch-fidelity's InceptionV3 with the tensors of ``weights_path`` (no pickled code)."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    path = Path(weights_path)
    if not path.is_file():
        raise SddpmError(f"no Inception weights at {path}; fetch torch-fidelity's "
                         "weights-inception-2015-12-05-6726825d.pth on a connected machine "
                         "and pass its path to --inception-weights")
    try:
        state = load_tensors(path, "Inception weights")
    except SddpmError:
        raise
    except Exception as e:  # noqa: BLE001 - any unpickling failure means the same thing
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SddpmError(f"{path} is not a plain tensor file ({reason[:120]}); pass "
                         "torch-fidelity's InceptionV3 state dict (.pth)") from None
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise SddpmError(f"{path} does not hold a state dict of tensors; pass "
                         "torch-fidelity's InceptionV3 weights (.pth)")
    with tempfile.TemporaryDirectory() as tmp:
        clean = Path(tmp) / "inception.pth"
        torch.save(dict(state), clean)
        try:
            model = FeatureExtractorInceptionV3(
                "inception-v3-compat", ["2048", "logits_unbiased"],
                feature_extractor_weights_path=str(clean))
        except RuntimeError as e:
            raise SddpmError(f"{path} does not fit torch-fidelity's InceptionV3 "
                             f"({str(e).splitlines()[0][:120]}); pass the "
                             "pt_inception-2015-12-05 weights") from None
    return model


def to_uint8_rgb(images: torch.Tensor) -> torch.Tensor:
    """``[N, C, H, W]`` in [-1, 1] -> uint8 ``[N, 3, H, W]`` (grey repeated)."""
    x = ((images.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return x.repeat(1, 3, 1, 1) if x.shape[1] == 1 else x


@torch.no_grad()
def inception_features(model, images: torch.Tensor, batch: int = 50,
                       progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Pool features ``[N, 2048]`` and unbiased logits ``[N, 1008]``, float64."""
    from tqdm.auto import tqdm

    pools, logits = [], []
    starts = range(0, len(images), batch)
    for i in tqdm(starts, desc="inception features", disable=not progress, leave=False):
        pool, logit = model(to_uint8_rgb(images[i:i + batch]))
        pools.append(pool.double())
        logits.append(logit.double())
    return torch.cat(pools), torch.cat(logits)


def real_inception_features(model, digest: str, real_n: int, data_dir=None,
                            progress: bool = False) -> torch.Tensor:
    """Pool features of the first ``real_n`` Fashion-MNIST test images, cached per weights."""
    def compute() -> np.ndarray:
        test = real_test_set(real_n, data_dir)
        pool, _ = inception_features(model, test.batch(np.arange(real_n)), progress=progress)
        return pool.numpy()

    name = f"inception-{digest[:16]}-fmnist-test-{real_n}.npy"
    return torch.from_numpy(cached_array(name, compute, shape=(real_n, 2048)))


def real_test_set(real_n: int, data_dir=None):
    """The Fashion-MNIST test set, checked to hold ``real_n`` images (cheap: run it first)."""
    from sddpm.data import load_dataset

    test = load_dataset("fmnist", image_size=32, data_dir=data_dir, split="test")
    if not 2 <= real_n <= len(test):
        raise SddpmError(f"--real-n {real_n}: the test set has {len(test)} images; "
                         f"pass 2 to {len(test)}")
    return test


def inception_score(logits: torch.Tensor,
                    seed: int = FIDELITY_SEED) -> tuple[float, float, int]:
    """IS mean and std over splits: papers' 10, fewer below 1000 images.

    A split of one image scores exactly 1 (its marginal is its own prediction), so
    small sets keep at least 100 images per split.
    """
    from torch_fidelity.metric_isc import isc_features_to_metric

    splits = max(1, min(10, len(logits) // 100))
    out = isc_features_to_metric(logits, splits=splits, shuffle=True, rng_seed=seed)
    return out["inception_score_mean"], out["inception_score_std"], splits


def check_inception_metrics(metrics) -> None:
    unknown = [m for m in metrics if m not in INCEPTION_METRICS]
    if unknown:
        raise SddpmError(f"unknown metric {unknown[0]!r}; expected fid, kid, prc and/or is")


def evaluate_with_inception(images: torch.Tensor, model, digest: str, metrics,
                            real_n: int = PAPER_SCALE_IMAGES, data_dir=None,
                            progress: bool = False) -> dict:
    """Inception FID/KID (pool features) and IS (logits) of ``images`` in [-1, 1]."""
    check_inception_metrics(metrics)
    pool, logits = inception_features(model, images, progress=progress)
    result = {}
    distances = [m for m in metrics if m in ("fid", "kid", "prc")]
    if distances:
        real = real_inception_features(model, digest, real_n, data_dir, progress)
        result.update(fid_kid(pool, real, distances, seed=FIDELITY_SEED))
    if "is" in metrics:
        result["is_mean"], result["is_std"], result["is_splits"] = inception_score(logits)
    official = digest.startswith(OFFICIAL_SHA256_PREFIX)
    real_images = real_n if distances else 0
    result.update({
        "images": len(images), "feature_extractor": "inception-v3 (torch-fidelity)",
        "inception_weights_sha256": digest, "official_weights": official,
        "real_images": real_images,
        "comparable_to_papers": comparable_to_papers(official, len(images), real_images),
    })
    return result


def comparable_to_papers(official: bool, images: int, real_images: int) -> bool:
    """The official graph and paper-scale sets: FID, KID and IS estimates move with N.

    ``real_images`` is 0 when only the IS (which needs no real set) was measured.
    """
    return bool(official and images >= PAPER_SCALE_IMAGES
                and (real_images == 0 or real_images >= PAPER_SCALE_IMAGES))
