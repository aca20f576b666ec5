import pytest
import torch

from sddpm.diffusion import GaussianDiffusion, ddim_timesteps, sample
from sddpm.errors import SddpmError
from sddpm.models import build_model
from sddpm.presets import get_preset


def test_linear_schedule():
    d = GaussianDiffusion()
    assert d.betas[0].item() == pytest.approx(1e-4)
    assert d.betas[-1].item() == pytest.approx(0.02)
    assert d.alphas_bar[-1].item() == pytest.approx(4.04e-5, rel=0.05)


def test_posterior_coefficients_and_fixed_large_variance():
    d = GaussianDiffusion()
    b = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    abar = torch.cumprod(1 - b, 0)
    t = 10
    assert d.posterior_mean_coef1[t] == pytest.approx((b[t] * abar[t - 1].sqrt() / (1 - abar[t])).item())
    assert d.posterior_mean_coef2[t] == pytest.approx(
        ((1 - abar[t - 1]) * (1 - b[t]).sqrt() / (1 - abar[t])).item())
    assert d.fixed_large_var[t] == pytest.approx(b[t].item())
    assert d.fixed_large_var[0] == pytest.approx((b[1] * (1 - abar[0]) / (1 - abar[1])).item())


def test_last_ddpm_step_returns_the_clipped_x0_prediction():
    d = GaussianDiffusion(num_steps=2)
    seen = {}

    def zero_eps(x, t):
        seen[int(t[0])] = x.clone()
        return torch.zeros_like(x)

    out = sample(zero_eps, d, (2, 1, 4, 4), sampler="ddpm", seed=5, progress=False)
    # at t = 0 no noise is added: the result is x_0 predicted from x_0-step input, clipped
    expected = (seen[0] / d.alphas_bar[0].sqrt().float()).clamp(-1, 1)
    torch.testing.assert_close(out, expected)
    assert (out.abs() == 1).any() and (out.abs() < 1).any()


def test_q_sample_and_predict_x0_invert():
    d = GaussianDiffusion()
    x0, eps = torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8)
    t = torch.tensor([0, 10, 500, 999])
    torch.testing.assert_close(d.predict_x0(d.q_sample(x0, t, eps), t, eps), x0,
                               rtol=1e-3, atol=1e-3)


def test_loss_of_a_perfect_predictor_is_zero():
    d = GaussianDiffusion()
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(4, 1, 8, 8)
    noises = []

    def oracle(x_t, t):
        # regenerate the loss's own draws from the same seed
        g2 = torch.Generator().manual_seed(0)
        torch.randint(d.num_steps, (4,), generator=g2)
        noises.append(torch.randn(x0.shape, generator=g2))
        return noises[-1]

    assert d.loss(oracle, x0, g).item() == 0.0


def test_ddim_timesteps():
    assert ddim_timesteps(1000, 10) == [900, 800, 700, 600, 500, 400, 300, 200, 100, 0]
    assert len(ddim_timesteps(1000, 50)) == 50
    with pytest.raises(SddpmError):
        ddim_timesteps(1000, 0)


@pytest.mark.parametrize("sampler,steps", [("ddpm", None), ("ddim", 5)])
def test_sampling_is_deterministic_for_a_seed(sampler, steps):
    torch.manual_seed(0)
    model = build_model(get_preset("tiny"), "snn").eval()
    d = GaussianDiffusion(num_steps=1000)
    if sampler == "ddpm":  # 1000 network calls: use a short schedule
        d = GaussianDiffusion(num_steps=20)
        model = _wrap_steps(model, 1000 // 20)
    kw = dict(sampler=sampler, steps=steps, progress=False)
    a = sample(model, d, (2, 1, 8, 8), seed=1, **kw)
    b = sample(model, d, (2, 1, 8, 8), seed=1, **kw)
    c = sample(model, d, (2, 1, 8, 8), seed=2, **kw)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= -1 and a.max() <= 1


def _wrap_steps(model, stride):
    return lambda x, t: model(x, t * stride)


def test_unknown_sampler_is_refused():
    with pytest.raises(SddpmError, match="unknown sampler .karras-euler."):
        sample(lambda x, t: x, GaussianDiffusion(), (1, 1, 8, 8), sampler="karras-euler")
