"""BatchNorm statistics that belong to the weights they normalise.

An EMA of the weights is a network nobody ran in training: its BatchNorm running
statistics, copied from the raw model, describe the activations of other weights.
Before a spike threshold that shifts who fires. The fix, as in SWA (Izmailov et al.
2018, ``torch.optim.swa_utils.update_bn``), is to measure the statistics anew: the
averaged network in train mode over a few hundred training images, each noised at a
random diffusion step as in training (Algorithm 1), with every BatchNorm's momentum
``None`` so that the running statistics become the plain mean over those batches.

The record of a recalibration is stored in a checkpoint under :data:`RECALIBRATION_KEY`;
weights that came from an EMA and lack it were written before this fix.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.optim.swa_utils import update_bn

# a checkpoint's record of the recalibration of the weights it samples with
RECALIBRATION_KEY = "bn_recalibration"
# a different stream from any training step's (sddpm.train.step_seed) for the same seed
_SALT = 0x5EED_B4_7C


@dataclass(frozen=True)
class Recalibration:
    """How the statistics were measured: training images, batch size, seed."""

    images: int = 512
    batch: int = 32
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def recalibration_stream(seed: int) -> int:
    """The generator seed of a recalibration (within torch's 64-bit range for any seed)."""
    return (seed * 1_000_003 + _SALT) % 2 ** 63


def has_batch_norm(net: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())


class _NoisedAtRandomSteps(nn.Module):
    """``net(x_t, t)`` with ``t ~ U{0..N-1}`` and ``x_t ~ q(x_t | x_0)``, as in training."""

    def __init__(self, net: nn.Module, diffusion, generator: torch.Generator):
        super().__init__()
        self.net, self.diffusion, self.generator = net, diffusion, generator

    def forward(self, x_0: torch.Tensor) -> torch.Tensor:
        t = torch.randint(self.diffusion.num_steps, (x_0.shape[0],), generator=self.generator)
        eps = torch.randn(x_0.shape, generator=self.generator, dtype=x_0.dtype)
        t, eps = t.to(x_0.device), eps.to(x_0.device)
        return self.net(self.diffusion.q_sample(x_0, t, eps), t)


def recalibrate_batch_norm(net: nn.Module, diffusion, data,
                           how: Recalibration = Recalibration()) -> Recalibration | None:
    """Measure ``net``'s BatchNorm running statistics anew, in place; ``net`` ends in eval mode.

    Parameters
    ----------
    net : the noise network ``net(x_t [B, C, H, W], t [B]) -> eps``
    diffusion : a :class:`sddpm.diffusion.GaussianDiffusion` (``num_steps``, ``q_sample``)
    data : training images with ``len()`` and ``batch(indices) -> [B, C, H, W]`` in [-1, 1]
    how : images (all of ``data`` when it has fewer), batch size and seed

    Returns the record of what was done (``images`` as used), or ``None`` when ``net``
    has no BatchNorm (the ANN twin's GroupNorm needs none). Every random draw comes from
    a generator of its own: the global RNG streams, and so a resumed training run, are
    untouched.
    """
    if not has_batch_norm(net):
        return None
    generator = torch.Generator().manual_seed(recalibration_stream(how.seed))
    chosen = torch.randperm(len(data), generator=generator)[:how.images].numpy()
    device = next(net.parameters()).device
    batches = (data.batch(chosen[i:i + how.batch]) for i in range(0, len(chosen), how.batch))
    with torch.no_grad():
        update_bn(batches, _NoisedAtRandomSteps(net, diffusion, generator), device=device)
    net.eval()
    return Recalibration(images=len(chosen), batch=how.batch, seed=how.seed)


def weights_from_ema(payload: dict) -> bool:
    """Whether a checkpoint samples with EMA weights (its own EMA, or a shipped copy of one)."""
    return payload.get("ema") is not None or bool(payload.get("shipped_from_ema"))


def stale_batch_norm(payload: dict, net: nn.Module) -> bool:
    """EMA weights with the raw model's BatchNorm statistics (written before the fix)."""
    return (weights_from_ema(payload) and payload.get(RECALIBRATION_KEY) is None
            and has_batch_norm(net))
