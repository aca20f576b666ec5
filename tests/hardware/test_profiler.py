import numpy as np
import pytest
import torch
from torch import nn

from sddpm.diffusion import GaussianDiffusion, ddim_timesteps
from sddpm.errors import SddpmError
from sddpm.hardware.profiler import ActivityProfiler, profile_sampling, real_fanout
from sddpm.hardware.spike_profile import SpikeProfile
from sddpm.models import build_model, count_macs
from sddpm.neurons import MultiStepIF
from sddpm.presets import get_preset


def _autograd_fanout(conv, size):
    """Independent count: d(sum of conv with all-ones weights)/d(input) per position."""
    x = torch.zeros(1, 1, *size, dtype=torch.float64, requires_grad=True)
    ones = torch.ones(1, 1, *conv.kernel_size, dtype=torch.float64)
    fn = nn.functional.conv2d if len(size) == 2 else nn.functional.conv3d
    fn(x, ones, stride=conv.stride, padding=conv.padding, dilation=conv.dilation).sum().backward()
    return x.grad[0, 0]


@pytest.mark.parametrize("conv, size", [
    (nn.Conv2d(1, 1, 3, padding=1), (6, 5)),
    (nn.Conv2d(1, 1, 3, stride=2, padding=1), (8, 8)),
    (nn.Conv2d(1, 1, 3, stride=2, padding=1), (7, 7)),
    (nn.Conv2d(1, 1, 1), (4, 4)),
    (nn.Conv3d(1, 1, (3, 3, 1), padding=(1, 1, 0)), (5, 5, 4)),
])
def test_real_fanout_counts_the_weights_each_input_meets(conv, size):
    assert torch.equal(real_fanout(conv, size), _autograd_fanout(conv, size))


def test_real_fanout_excludes_padding():
    counts = real_fanout(nn.Conv2d(1, 1, 3, padding=1), (4, 4))
    assert counts[0, 0] == 4 and counts[0, 1] == 6 and counts[1, 1] == 9
    assert counts.sum() < 4 * 4 * 9  # the dense count includes the padding taps


class _FixedRate(nn.Module):
    """Constant current 0.6 into IF neurons (threshold 1): a spike every 2nd step."""

    def __init__(self, timesteps):
        super().__init__()
        self.T = timesteps
        self.neuron = MultiStepIF(timesteps=timesteps)
        self.conv = nn.Conv2d(2, 3, 1)

    def forward(self, x, t):
        currents = torch.full((self.T * x.shape[0], 2, 4, 4), 0.6)
        return self.conv(self.neuron(currents))


def _profile_once(model, T, batch=2):
    with ActivityProfiler(model, T) as p, torch.no_grad():
        model(torch.zeros(batch, 1), torch.zeros(batch, dtype=torch.long))
    return p.profile({"arch": "snn"})


def test_doubling_T_at_a_fixed_rate_doubles_the_sops():
    p4, p8 = _profile_once(_FixedRate(4), 4), _profile_once(_FixedRate(8), 8)
    assert p4.mean_rate()[0] == p8.mean_rate()[0] == 0.5
    assert p8.synaptic_ops()[0, 0] == 2 * p4.synaptic_ops()[0, 0] > 0
    assert p4.layers[0].binary_input and p4.layers[0].per_timestep


@pytest.fixture(scope="module")
def tiny_profile():
    config = get_preset("tiny")
    torch.manual_seed(0)
    model = build_model(config, "snn").eval()
    profile, _ = profile_sampling(model, GaussianDiffusion(config.diffusion_steps), config,
                                  n=3, sampler="ddim", steps=4, progress=False,
                                  meta={"arch": "snn"})
    return model, config, profile


def test_profile_has_one_entry_per_denoising_step(tiny_profile):
    _, config, profile = tiny_profile
    assert list(profile.diffusion_t) == ddim_timesteps(config.diffusion_steps, 4)
    assert profile.input_rate.shape == (4, len(profile.layers), config.timesteps)


def test_layers_found_in_the_model_in_execution_order(tiny_profile):
    model, config, profile = tiny_profile
    names = [l.name for l in profile.layers]
    expected = {n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Conv3d, nn.Linear))}

    assert set(names) == expected and len(names) == len(expected)
    first_conv = next(l for l in profile.layers if l.kind == "conv2d")
    assert first_conv.name == "encoder.conv1"
    assert not first_conv.binary_input and not first_conv.per_timestep  # image repeats over T
    kinds = {l.name: l.binary_input for l in profile.layers}
    assert kinds["encoder.conv2"] and kinds["down.0.conv1"] and not kinds["decoder.conv"]


def test_dense_macs_agree_with_count_macs(tiny_profile):
    model, config, profile = tiny_profile
    T = config.timesteps
    first = next(l for l in profile.layers if l.kind == "conv2d")
    # count_macs runs the first conv T times and divides the whole forward by T
    expected = count_macs(model, config)["macs_per_forward"] * T
    assert profile.dense_macs().sum() + (T - 1) * first.dense_macs == pytest.approx(expected, rel=1e-12)


def test_population_rate_is_the_rate_into_the_conv_it_feeds(tiny_profile):
    _, _, profile = tiny_profile
    pops = [p.name for p in profile.populations]
    layers = [l.name for l in profile.layers]
    pop = profile.population_rate[:, pops.index("encoder.neuron")]
    into = profile.input_rate[:, layers.index("encoder.conv2")]
    np.testing.assert_allclose(pop, into, rtol=1e-12)
    assert 0 < pop.mean() < 1


def test_exact_events_equal_the_estimate_without_padding(tiny_profile):
    _, _, profile = tiny_profile
    sops = profile.synaptic_ops()
    checked = 0
    for i, layer in enumerate(profile.layers):
        if layer.kind == "linear" or layer.weight_shape[2:] == (1, 1):
            np.testing.assert_allclose(profile.exact_events[:, i], sops[:, i], rtol=1e-12)
            checked += 1
    assert checked >= 3
    padded = [i for i, l in enumerate(profile.layers) if l.weight_shape[2:] == (3, 3)]
    assert not np.allclose(profile.exact_events[:, padded], sops[:, padded])


def test_profile_round_trips_through_hdf5_and_csv(tiny_profile, tmp_path):
    _, config, profile = tiny_profile
    back = SpikeProfile.load_h5(profile.save_h5(tmp_path / "p.h5"))
    assert back.layers == profile.layers and back.populations == profile.populations
    assert back.meta == profile.meta and back.timesteps == profile.timesteps
    for name in ("diffusion_t", "input_rate", "exact_events", "population_rate"):
        assert np.array_equal(getattr(back, name), getattr(profile, name))
    lines = profile.save_csv(tmp_path / "p.csv").read_text().splitlines()
    per_step = sum(config.timesteps if l.per_timestep else 1 for l in profile.layers)
    per_step += len(profile.populations) * config.timesteps
    assert lines[0].startswith("diffusion_t,") and len(lines) == 1 + 4 * per_step


def test_damaged_profile_file_is_one_clear_error(tmp_path):
    bad = tmp_path / "p.h5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(SddpmError, match="not a spike profile"):
        SpikeProfile.load_h5(bad)
    with pytest.raises(SddpmError, match="does not exist"):
        SpikeProfile.load_h5(tmp_path / "absent.h5")


class _SharedConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x, t):
        return self.conv(self.conv(x))


def test_a_layer_run_twice_per_forward_is_refused():
    with pytest.raises(SddpmError, match="conv ran twice in one forward pass"):
        _profile_once_input(_SharedConv(), torch.rand(1, 1, 4, 4), 1)


def test_transposed_convolutions_are_refused_not_skipped():
    with pytest.raises(SddpmError, match="ConvTranspose2d, which the profiler cannot count"):
        ActivityProfiler(nn.Sequential(nn.ConvTranspose2d(1, 1, 3)), 1)


def _profile_once_input(model, x, T):
    with ActivityProfiler(model, T) as p, torch.no_grad():
        model(x, torch.zeros(x.shape[0], dtype=torch.long))
    return p.profile()


def test_rates_and_events_do_not_depend_on_the_batch_size():
    config = get_preset("tiny")
    torch.manual_seed(0)
    model = build_model(config, "snn").eval()
    x = torch.randn(1, config.image_channels, config.image_size, config.image_size)
    one = _profile_once_input(model, x, config.timesteps)
    three = _profile_once_input(model, x.repeat(3, 1, 1, 1), config.timesteps)
    assert one.layers == three.layers
    np.testing.assert_allclose(three.input_rate, one.input_rate, rtol=1e-12)
    np.testing.assert_allclose(three.exact_events, one.exact_events, rtol=1e-12)
    np.testing.assert_allclose(three.population_rate, one.population_rate, rtol=1e-12)


def test_arch_is_recorded_without_being_told():
    config = get_preset("tiny")
    x = torch.randn(1, config.image_channels, config.image_size, config.image_size)
    assert _profile_once_input(build_model(config, "ann").eval(), x, 1).arch == "ann"
    snn = _profile_once_input(build_model(config, "snn").eval(), x, config.timesteps)
    assert snn.arch == "snn" and snn.meta["arch"] == "snn"


def test_damaged_profile_header_is_one_clear_error(tiny_profile, tmp_path):
    import h5py

    path = tiny_profile[2].save_h5(tmp_path / "p.h5")
    with h5py.File(path, "a") as f:
        f.attrs["header"] = '{"format_version": 1, "timesteps": 4}'
    with pytest.raises(SddpmError, match="not a spike profile.*KeyError"):
        SpikeProfile.load_h5(path)
    with h5py.File(path, "a") as f:
        f.attrs["header"] = '[1, 2]'
    with pytest.raises(SddpmError, match="not a spike profile"):
        SpikeProfile.load_h5(path)
    with h5py.File(path, "a") as f:
        f.attrs["header"] = '{"format_version": 99}'
    with pytest.raises(SddpmError, match="format version 99"):
        SpikeProfile.load_h5(path)
