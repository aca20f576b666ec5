"""FID and KID between two feature sets, with torch-fidelity's estimators.

Whatever network made the features (the project's classifier, torch-fidelity's
InceptionV3), the distances are computed here, one way.
"""

from __future__ import annotations

import torch

from sddpm.errors import SddpmError

METRICS = ("fid", "kid")


def fid_kid(generated: torch.Tensor, real: torch.Tensor, metrics=METRICS,
            kid_subset_size: int = 1000, seed: int = 0) -> dict:
    """torch-fidelity's estimators on two feature sets ``[N, D]``."""
    from torch_fidelity.metric_fid import (
        fid_features_to_statistics,
        fid_statistics_to_metric,
    )
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
