"""Our DDPM/DDIM against diffusers' schedulers, and what every sampler must do."""

import pytest
import torch

from sddpm.diffusers_samplers import ClippedEps, call_timesteps, make_scheduler
from sddpm.diffusion import SAMPLERS, GaussianDiffusion, call_schedule, ddim_timesteps, sample
from sddpm.errors import SddpmError
from sddpm.models import build_model
from sddpm.presets import get_preset
from sddpm.shipped import shipped_path

SHIPPED = shipped_path("fmnist-small-snn.pt")


def _trajectories(model, ours, theirs, steps, shape, eta=0.0):
    d = GaussianDiffusion()
    a, b = [], []
    for name, into in ((ours, a), (theirs, b)):
        sample(model, d, shape, sampler=name, steps=steps, eta=eta, seed=3, progress=False,
               dtype=torch.float64, trajectory=into)
    assert len(a) == len(b) == len(call_schedule(d, ours, steps))
    return max(float((x - y).abs().max()) for x, y in zip(a, b))


def _tiny_snn():
    torch.manual_seed(0)
    return build_model(get_preset("tiny"), "snn").double().eval()


@pytest.mark.parametrize("ours, theirs, steps, eta", [
    ("ddim", "diffusers-ddim", 10, 0.0), ("ddim", "diffusers-ddim", 50, 0.0),
    ("ddim", "diffusers-ddim", 20, 1.0), ("ddpm", "diffusers-ddpm", None, 0.0)])
def test_ours_and_diffusers_agree_step_for_step_on_tiny(ours, theirs, steps, eta):
    # float64 throughout: in float32 a spiking network turns last-bit differences of the
    # two formulas into flipped spikes, and the trajectories part (README, Samplers)
    assert _trajectories(_tiny_snn(), ours, theirs, steps, (1, 1, 16, 16), eta) < 1e-6


@pytest.mark.skipif(not SHIPPED.is_file(), reason="needs the shipped model")
def test_ours_and_diffusers_ddim_agree_step_for_step_on_the_shipped_model():
    from sddpm.sampling import model_from_checkpoint

    model, _ = model_from_checkpoint(SHIPPED)
    assert _trajectories(model.double(), "ddim", "diffusers-ddim", 10, (1, 1, 32, 32)) < 1e-6


def test_timestep_spacing_ours_rounds_where_diffusers_floors():
    d = GaussianDiffusion()
    for k in (10, 20, 50, 100, 1000):  # where k divides 1000 the two are one schedule
        assert ddim_timesteps(1000, k) == call_schedule(d, "diffusers-ddim", k)
    # elsewhere diffusers' 'leading' spacing steps by 1000 // k and never starts near
    # t = 999: for 400 steps its first call is at 798, ours at 998
    ours, theirs = ddim_timesteps(1000, 400), call_schedule(d, "diffusers-ddim", 400)
    assert (ours[0], theirs[0]) == (998, 798)


def test_every_sampler_calls_the_network_as_its_schedule_says():
    d = GaussianDiffusion()
    for name in SAMPLERS:
        seen = []

        def model(x, t):
            seen.append(int(t[0]))
            return torch.tanh(0.5 * x)

        out = sample(model, d, (2, 1, 4, 4), sampler=name, steps=10, progress=False)
        assert seen == call_schedule(d, name, 10), name
        assert out.abs().max() <= 1 and torch.isfinite(out).all()
        again = sample(model, d, (2, 1, 4, 4), sampler=name, steps=10, progress=False)
        assert torch.equal(out, again), f"{name} is not reproducible from its seed"
    assert len(call_schedule(d, "heun", 10)) == 19  # second order: two calls but the last


def test_clipping_x0_equals_dpm_solvers_own_thresholding_at_one():
    d = GaussianDiffusion()

    def model(x, t):  # predicts x_0 far outside [-1, 1], so clipping matters
        return -3 * x

    clipped = sample(model, d, (2, 1, 4, 4), sampler="dpm-solver++", steps=8,
                     dtype=torch.float64, progress=False)
    scheduler = make_scheduler("dpm-solver++", d, 8)
    scheduler.config.thresholding, scheduler.config.sample_max_value = True, 1.0
    x = torch.randn((2, 1, 4, 4), generator=torch.Generator().manual_seed(0),
                    dtype=torch.float64)
    for t in scheduler.timesteps:
        x = scheduler.step(model(x, t), t, x).prev_sample
    # within 1e-6: diffusers computes its thresholding quantile in float32
    torch.testing.assert_close(clipped, x.clamp(-1, 1), rtol=0, atol=1e-6)
    eps = ClippedEps(model, d)(x, torch.tensor([5, 5]))
    assert torch.isfinite(eps).all()


def test_bad_sampler_input_is_one_line():
    d = GaussianDiffusion()
    with pytest.raises(SddpmError, match="unknown sampler 'dpm'"):
        call_schedule(d, "dpm", 10)
    with pytest.raises(SddpmError, match="1..1000 steps"):
        call_schedule(d, "unipc", 2000)
    with pytest.raises(SddpmError, match="--eta applies to DDIM only"):
        sample(lambda x, t: x, d, (1, 1, 2, 2), sampler="unipc", steps=3, eta=0.5,
               progress=False)

    class Fractional:
        timesteps = torch.tensor([999.0, 500.5])

    with pytest.raises(SddpmError, match="between integers"):
        call_timesteps(Fractional(), "heun")
