"""FID, KID and precision/recall between two feature sets, with torch-fidelity's
estimators.

Whatever network made the features (the project's classifier, torch-fidelity's
InceptionV3), the distances are computed here, one way.
"""

from __future__ import annotations

import numpy as np
import torch

from sddpm.errors import SddpmError

METRICS = ("fid", "kid", "prc")
PRC_NEIGHBOURHOOD = 3  # torch-fidelity's default k of the k-NN manifolds


def fid_kid(generated: torch.Tensor, real: torch.Tensor, metrics=METRICS,
            kid_subset_size: int = 1000, seed: int = 0) -> dict:
    """torch-fidelity's estimators on two feature sets ``[N, D]``.

    ``prc``: improved precision and recall (Kynkäänniemi et al. 2019): the share of
    generated images inside the real images' k-NN manifold, and of real images inside
    the generated one. Both depend on the set sizes (a larger set has smaller k-NN
    balls), so the real side is a seeded subset as large as the generated set (all of
    it when fewer): two models measured at the same N compare.
    """
    from torch_fidelity.metric_fid import (
        fid_features_to_statistics,
        fid_statistics_to_metric,
    )
    from torch_fidelity.metric_kid import kid_features_to_metric

    unknown = set(metrics) - set(METRICS)
    if unknown:
        raise SddpmError(f"unknown metric {sorted(unknown)[0]!r}; expected fid, kid or prc")
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
    if "prc" in metrics:
        from torch_fidelity.metric_prc import prc_features_to_metric

        if min(len(generated), len(real)) <= PRC_NEIGHBOURHOOD:
            raise SddpmError(f"precision/recall need more than {PRC_NEIGHBOURHOOD} generated "
                             "and real images (k-NN balls); raise --n or --real-n")
        k = min(len(generated), len(real))
        pick = torch.randperm(len(real), generator=torch.Generator().manual_seed(seed))[:k]
        prc = prc_features_to_metric(generated, real[pick], prc_neighborhood=PRC_NEIGHBOURHOOD,
                                     prc_batch_size=10000, save_cpu_ram=True, verbose=False)
        out.update({"precision": prc["precision"], "recall": prc["recall"],
                    "f_score": prc["f_score"], "prc_real_images": k,
                    "prc_neighbourhood": PRC_NEIGHBOURHOOD})
    return out


def bootstrap_intervals(generated: torch.Tensor, real: torch.Tensor, point: dict, *,
                        resamples: int = 500, level: float = 0.95, seed: int = 0,
                        keep_resamples: bool = False) -> dict:
    """Normal bootstrap intervals of FID and KID over the generated images.

    ``point`` holds :func:`fid_kid`'s values; each interval is ``point +- z * s`` where
    ``s`` is the spread of the statistic over ``resamples`` resamples of the generated
    features with replacement (the 10,000 real test images are the fixed reference).
    The spread, not the percentiles: a resample's duplicates shrink its covariance's
    rank, so resampled FIDs sit above a fresh sample's and their percentiles need not
    even contain the point value. KID's spread is that of the unbiased polynomial-kernel
    MMD^2 against the whole real set (the quantity torch-fidelity's subset KID
    estimates), its pairs taken between distinct images only.

    The resampled indices depend on ``seed`` and the number of images only, so two image
    sets of the same size made from the same noise are resampled alike: with
    ``keep_resamples`` the values are returned (``fid_resamples``, ``kid_resamples``)
    and :func:`paired_difference` gives the interval of their difference.
    """
    from statistics import NormalDist

    from torch_fidelity.metric_fid import (
        fid_features_to_statistics,
        fid_statistics_to_metric,
    )

    if resamples < 10:
        raise SddpmError(f"a bootstrap needs at least 10 resamples, got {resamples}")
    if not 0 < level < 1:
        raise SddpmError(f"confidence level must lie in (0, 1), got {level}")
    n = len(generated)
    if n < 3:
        raise SddpmError("a bootstrap interval needs at least 3 images; raise --n")
    gen, ref = generated.double(), real.double()
    dim = gen.shape[1]

    def kernel(a, b):  # torch-fidelity's defaults: degree 3, gamma 1/D, coef0 1
        return (a @ b.T / dim + 1) ** 3

    k_xx = kernel(gen, gen)
    k_diag = k_xx.diagonal()
    k_xy = torch.cat([kernel(gen, ref[i:i + 2000]) for i in range(0, len(ref), 2000)],
                     dim=1).mean(dim=1)
    m = len(ref)
    k_yy = sum(kernel(ref[i:i + 2000], ref).sum() - kernel(ref[i:i + 2000], ref[i:i + 2000])
               .diagonal().sum() for i in range(0, m, 2000)) / (m * (m - 1))
    real_stats = fid_features_to_statistics(ref)
    rng = np.random.default_rng(seed)
    fids, kids = [], []
    for _ in range(resamples):
        idx = torch.from_numpy(rng.integers(0, n, n))
        fids.append(fid_statistics_to_metric(fid_features_to_statistics(gen[idx]), real_stats,
                                             verbose=False)["frechet_inception_distance"])
        counts = torch.bincount(idx, minlength=n).double()
        same = (counts ** 2).sum()  # pairs of one image with itself
        xx = (counts @ k_xx @ counts - (counts ** 2 * k_diag).sum()) / (n * n - same)
        kids.append(float(xx + k_yy - 2 * (counts * k_xy).sum() / n))
    z = NormalDist().inv_cdf((1 + level) / 2)
    out = {"ci_level": level, "bootstrap_resamples": resamples}
    for name, key, values in (("fid", "fid", fids), ("kid", "kid_mean", kids)):
        spread = float(np.std(values, ddof=1))
        out.update({f"{name}_boot_std": spread, f"{name}_ci_low": point[key] - z * spread,
                    f"{name}_ci_high": point[key] + z * spread})
        if keep_resamples:
            out[f"{name}_resamples"] = [float(v) for v in values]
    return out


def paired_difference(a: dict, b: dict, metric: str = "fid", level: float = 0.95) -> dict:
    """``a - b`` of one metric with its normal bootstrap interval from paired resamples.

    ``a`` and ``b`` are results with ``<metric>_resamples`` of :func:`bootstrap_intervals`
    over equally many images with the same seed: resample k of both drew the same image
    indices, so where image i of both sets came from the same noise the shared part of
    their variation cancels.
    """
    from statistics import NormalDist

    key = {"fid": "fid", "kid": "kid_mean"}[metric]
    ra, rb = a.get(f"{metric}_resamples"), b.get(f"{metric}_resamples")
    if not ra or not rb or len(ra) != len(rb):
        raise SddpmError(f"a paired difference needs both results' {metric} resamples, as "
                         "many of each (bootstrap_intervals(..., keep_resamples=True))")
    spread = float(np.std(np.subtract(ra, rb), ddof=1))
    diff = a[key] - b[key]
    z = NormalDist().inv_cdf((1 + level) / 2)
    return {"diff": diff, "ci_low": diff - z * spread, "ci_high": diff + z * spread,
            "boot_std": spread}


def paired_ratio(a: dict, b: dict, metric: str = "fid", level: float = 0.95) -> dict:
    """``a / b`` of one metric with a normal bootstrap interval on its log, from paired
    resamples as :func:`paired_difference` takes them.

    A ratio's bootstrap distribution is skewed (the denominator may come near 0), its log
    far less: the interval is ``exp(log(a/b) +- z * std(log ra - log rb))``, never
    below 0, and the same for ``b / a`` turned over. Only for metrics that stay positive
    (FID; KID's unbiased estimate may not, so it is refused).
    """
    from statistics import NormalDist

    if metric != "fid":
        raise SddpmError(f"a ratio of {metric} is not defined (its estimate may be <= 0); "
                         "compare KID by paired_difference")
    ra, rb = a.get("fid_resamples"), b.get("fid_resamples")
    if not ra or not rb or len(ra) != len(rb):
        raise SddpmError("a paired ratio needs both results' fid resamples, as many of each "
                         "(bootstrap_intervals(..., keep_resamples=True))")
    ra, rb = np.asarray(ra, dtype=np.float64), np.asarray(rb, dtype=np.float64)
    if a["fid"] <= 0 or b["fid"] <= 0 or (ra <= 0).any() or (rb <= 0).any():
        raise SddpmError("a paired FID ratio needs positive FIDs and resamples")
    spread = float(np.std(np.log(ra) - np.log(rb), ddof=1))
    ratio = a["fid"] / b["fid"]
    z = NormalDist().inv_cdf((1 + level) / 2)
    return {"ratio": ratio, "ci_low": ratio * float(np.exp(-z * spread)),
            "ci_high": ratio * float(np.exp(z * spread)), "log_boot_std": spread}
