"""Samplers from Hugging Face diffusers' schedulers, run on our noise predictors.

diffusers keeps the standard implementations of the fast solvers (DPM-Solver++, UniPC,
DEIS, Heun, ...); we configure each from our own :class:`~sddpm.diffusion.GaussianDiffusion`
(its betas, epsilon prediction) and drive it with the same noise generator as our own
DDPM and DDIM, so that a seed means the same starting noise for every sampler.

Clipping x_0 to [-1, 1], as our samplers do, happens in one place for all of them:
:class:`ClippedEps` hands the scheduler the epsilon that is consistent with the clipped
x_0 prediction. For DDIM this is what ``use_clipped_model_output`` does inside diffusers;
for the data-prediction solvers (DPM-Solver++, UniPC) it equals their thresholding with
a maximum of 1; the Karras-sigma schedulers (Euler, Heun) have no clipping of their own.

The network is only ever called at integer diffusion steps (its time embedding and the
Lava bundle's host side take ``t`` as an integer); a scheduler whose timesteps fall
between integers is refused rather than rounded.
"""

from __future__ import annotations

import inspect
from typing import Callable

import torch
from tqdm.auto import tqdm

from sddpm.errors import SddpmError
from sddpm.sampler_table import SCHEDULERS, default_steps

def make_scheduler(name: str, diffusion, steps: int):
    """diffusers' scheduler ``name`` on ``diffusion``'s betas, set to ``steps`` steps."""
    if name not in SCHEDULERS:
        raise SddpmError(f"unknown diffusers sampler {name!r}; choose one of "
                         f"{', '.join(SCHEDULERS)}")
    if not 1 <= steps <= diffusion.num_steps:
        raise SddpmError(f"{name} needs 1..{diffusion.num_steps} steps, got {steps}")
    import diffusers  # 4 s to import: only when a diffusers sampler runs

    cls_name, options = SCHEDULERS[name]
    scheduler = getattr(diffusers, cls_name)(
        num_train_timesteps=diffusion.num_steps,
        trained_betas=diffusion.betas.detach().cpu().numpy(),
        prediction_type="epsilon", **options)
    # diffusers keeps the schedule in float32 (its cumulative product drifts by ~1e-6
    # relative at t = 999); it gets ours, in float64, before set_timesteps derives its
    # sigmas from it, so that both families of samplers step on the same numbers
    betas = diffusion.betas.detach().cpu().to(torch.float64)
    scheduler.betas, scheduler.alphas = betas, 1 - betas
    scheduler.alphas_cumprod = diffusion.alphas_bar.detach().cpu().to(torch.float64)
    if hasattr(scheduler, "alpha_t"):  # the DPM-Solver family's log-SNR tables
        scheduler.alpha_t = scheduler.alphas_cumprod.sqrt()
        scheduler.sigma_t = (1 - scheduler.alphas_cumprod).sqrt()
        scheduler.lambda_t = scheduler.alpha_t.log() - scheduler.sigma_t.log()
    scheduler.set_timesteps(steps)
    return scheduler


def call_timesteps(scheduler, name: str) -> list[int]:
    """The diffusion step of each network call, in order (a Heun step appears twice)."""
    ts = [float(t) for t in scheduler.timesteps]
    fractional = [t for t in ts if t != round(t)]
    if fractional:
        raise SddpmError(f"{name} with {len(ts)} calls would run the network at diffusion "
                         f"step {fractional[0]:g}, between integers; choose another number "
                         "of steps")
    return [int(round(t)) for t in ts]


class ClippedEps:
    """``model`` as the scheduler sees it: epsilon consistent with a clipped x_0.

    ``x`` is the variance-preserving x_t (a Karras-sigma scheduler's input after
    ``scale_model_input``).
    """

    def __init__(self, model: Callable, diffusion):
        self.model = model
        self.diffusion = diffusion

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        x_0 = self.diffusion.predict_x0(x, t, self.model(x, t)).clamp(-1, 1)
        a = self.diffusion.alphas_bar[t].to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
        return (x - a.sqrt() * x_0) / (1 - a).sqrt()


def _step_options(scheduler, generator, eta: float, name: str) -> dict:
    accepted = inspect.signature(scheduler.step).parameters
    options = {"generator": generator} if "generator" in accepted else {}
    if eta:
        if "eta" not in accepted:
            raise SddpmError(f"--eta applies to DDIM only, not to {name}")
        options["eta"] = eta
    return options


@torch.no_grad()
def sample_with_scheduler(model: Callable, diffusion, shape: tuple, *, name: str,
                          steps: int | None, eta: float, generator: torch.Generator,
                          device, progress: bool, dtype: torch.dtype = torch.float32,
                          trajectory: list | None = None) -> torch.Tensor:
    """Images from diffusers' scheduler ``name``; ``trajectory`` collects x after each step."""
    scheduler = make_scheduler(name, diffusion, steps or default_steps(name))
    ts = call_timesteps(scheduler, name)
    options = _step_options(scheduler, generator, eta, name)
    eps_model = ClippedEps(model, diffusion)  # diffusion on device, as our samplers need
    x = torch.randn(shape, generator=generator, dtype=dtype).to(device)
    x = x * float(scheduler.init_noise_sigma)
    for t_int, t in zip(tqdm(ts, desc=f"{name} sampling", disable=not progress),
                        scheduler.timesteps):
        x_in = scheduler.scale_model_input(x, t)
        eps = eps_model(x_in, torch.full((shape[0],), t_int, dtype=torch.long, device=device))
        x = scheduler.step(eps, t, x, **options).prev_sample
        if trajectory is not None:
            trajectory.append(x.clone())
    return x.clamp(-1, 1)
