"""Gaussian diffusion (Ho et al. 2020): schedule, training loss, DDPM and DDIM samplers.

Our own DDPM and DDIM live here; the other samplers (DPM-Solver++, UniPC, ...) are
diffusers' schedulers driven by :mod:`sddpm.diffusers_samplers`, and the two DDIMs and
DDPMs are checked against each other step for step.

Names follow the papers: ``betas``, ``alphas_bar``; ``x_0`` data, ``x_t`` noisy data,
``eps`` the noise. The network is any ``model(x_t [B, C, H, W], t [B]) -> eps``.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from sddpm.diffusers_samplers import call_timesteps, make_scheduler, sample_with_scheduler
from sddpm.errors import SddpmError
from sddpm.sampler_table import OWN_SAMPLERS, SCHEDULERS, default_steps

SAMPLERS = OWN_SAMPLERS + tuple(SCHEDULERS)


class GaussianDiffusion(nn.Module):
    """Linear beta schedule from ``beta_1`` to ``beta_T`` over ``num_steps`` steps."""

    def __init__(self, num_steps: int = 1000, beta_1: float = 1e-4, beta_T: float = 0.02):
        super().__init__()
        self.num_steps = num_steps
        betas = torch.linspace(beta_1, beta_T, num_steps, dtype=torch.float64)
        alphas_bar = torch.cumprod(1 - betas, dim=0)
        alphas_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), alphas_bar[:-1]])
        posterior_var = betas * (1 - alphas_bar_prev) / (1 - alphas_bar)
        self.register_buffer("betas", betas)
        self.register_buffer("alphas_bar", alphas_bar)
        self.register_buffer("alphas_bar_prev", alphas_bar_prev)
        # "fixedlarge" variance of DDPM: beta_t, with the first entry from the posterior
        self.register_buffer("fixed_large_var", torch.cat([posterior_var[1:2], betas[1:]]))
        self.register_buffer(
            "posterior_mean_coef1", betas * alphas_bar_prev.sqrt() / (1 - alphas_bar)
        )
        self.register_buffer(
            "posterior_mean_coef2", (1 - alphas_bar_prev) * (1 - betas).sqrt() / (1 - alphas_bar)
        )

    @staticmethod
    def _at(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return values[t].to(like.dtype).view(-1, *([1] * (like.dim() - 1)))

    def q_sample(self, x_0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Sample ``x_t ~ q(x_t | x_0)``."""
        a = self._at(self.alphas_bar, t, x_0)
        return a.sqrt() * x_0 + (1 - a).sqrt() * eps

    def loss(self, model: Callable, x_0: torch.Tensor, generator: torch.Generator | None = None):
        """Algorithm 1: epsilon-MSE at ``t ~ U{0..N-1}``; returns the batch mean."""
        t = torch.randint(self.num_steps, (x_0.shape[0],), generator=generator)
        eps = torch.randn(x_0.shape, generator=generator, dtype=x_0.dtype)
        t, eps = t.to(x_0.device), eps.to(x_0.device)
        return nn.functional.mse_loss(model(self.q_sample(x_0, t, eps), t), eps)

    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        a = self._at(self.alphas_bar, t, x_t)
        return (x_t - (1 - a).sqrt() * eps) / a.sqrt()


def check_sampler(sampler: str) -> str:
    """``sampler`` if it is one of :data:`SAMPLERS`, else the one-line error."""
    if sampler not in SAMPLERS:
        raise SddpmError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    return sampler


def _noise(shape, generator, device, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(shape, generator=generator, dtype=dtype).to(device)


def ddim_timesteps(num_steps: int, k: int) -> list[int]:
    """``k`` evenly spaced diffusion steps, descending, ending at 0."""
    if not 1 <= k <= num_steps:
        raise SddpmError(f"DDIM needs 1..{num_steps} steps, got {k}")
    stride = num_steps / k
    return sorted({int(round(i * stride)) for i in range(k)}, reverse=True)


def call_schedule(diffusion: "GaussianDiffusion", sampler: str,
                  steps: int | None = None) -> list[int]:
    """The diffusion step of every network call ``sampler`` makes, in order.

    Its length is the number of noise-network forwards per image (a second-order
    solver's extra calls included), read from the sampler itself.
    """
    check_sampler(sampler)
    if sampler == "ddpm":
        return list(range(diffusion.num_steps - 1, -1, -1))
    if sampler == "ddim":
        return ddim_timesteps(diffusion.num_steps, steps or 50)
    return call_timesteps(make_scheduler(sampler, diffusion, steps or default_steps(sampler)),
                          sampler)


@torch.no_grad()
def sample(
    model: Callable,
    diffusion: GaussianDiffusion,
    shape: tuple,
    *,
    sampler: str = "ddpm",
    steps: int | None = None,
    eta: float = 0.0,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
    dtype: torch.dtype = torch.float32,
    trajectory: list | None = None,
) -> torch.Tensor:
    """Generate ``shape = (B, C, H, W)`` images in [-1, 1].

    ``ddpm``: Algorithm 2 with the fixed-large variance, x_0 clipped to [-1, 1], over
    all steps. ``ddim``: ``steps`` evenly spaced steps with stochasticity ``eta``.
    Any other name in :data:`SAMPLERS` is diffusers' scheduler of that name over
    ``steps`` steps. The result depends only on the model, ``seed`` and ``dtype`` (the
    precision of x and of every noise draw); ``trajectory``, when given, collects x after
    every step.
    """
    check_sampler(sampler)
    generator = torch.Generator().manual_seed(seed)
    if sampler not in OWN_SAMPLERS:
        return sample_with_scheduler(model, diffusion, shape, name=sampler, steps=steps,
                                     eta=eta, generator=generator, device=device,
                                     progress=progress, dtype=dtype, trajectory=trajectory)
    x = _noise(shape, generator, device, dtype)
    ts = call_schedule(diffusion, sampler, steps)
    for i, t_int in enumerate(tqdm(ts, desc=f"{sampler} sampling", disable=not progress)):
        t = torch.full((shape[0],), t_int, dtype=torch.long, device=device)
        eps = model(x, t)
        x_0 = diffusion.predict_x0(x, t, eps).clamp(-1, 1)
        if sampler == "ddpm":
            mean = (GaussianDiffusion._at(diffusion.posterior_mean_coef1, t, x) * x_0
                    + GaussianDiffusion._at(diffusion.posterior_mean_coef2, t, x) * x)
            z = _noise(shape, generator, device, dtype) if t_int > 0 else torch.zeros_like(x)
            x = mean + GaussianDiffusion._at(diffusion.fixed_large_var, t, x).sqrt() * z
        else:
            x = _ddim_step(diffusion, x, x_0, t_int, ts[i + 1] if i + 1 < len(ts) else -1,
                           eta, generator)
        if trajectory is not None:
            trajectory.append(x.clone())
    return x.clamp(-1, 1)


def _ddim_step(diffusion, x_t, x_0, t: int, t_prev: int, eta: float, generator):
    a_t = diffusion.alphas_bar[t].item()
    a_prev = diffusion.alphas_bar[t_prev].item() if t_prev >= 0 else 1.0
    # eps recomputed from the clipped x_0 keeps the step consistent with it
    eps = (x_t - a_t ** 0.5 * x_0) / (1 - a_t) ** 0.5
    sigma = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)) ** 0.5
    x = a_prev ** 0.5 * x_0 + max(1 - a_prev - sigma ** 2, 0.0) ** 0.5 * eps
    if sigma > 0:
        x = x + sigma * _noise(x_t.shape, generator, x_t.device, x_t.dtype)
    return x
