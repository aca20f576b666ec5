import numpy as np
import pytest
import torch

from hardware.energy import energy_report
from hardware.hardware_profiles import available_profiles, load_profile
from hardware.profiler import ActivityProfiler, profile_sampling
from sddpm.diffusion import GaussianDiffusion
from sddpm.errors import SddpmError
from sddpm.models import build_model, count_macs
from sddpm.neurons import MultiStepIF, set_threshold
from sddpm.presets import get_preset


def _profile(arch="snn", threshold=None, steps=3):
    config = get_preset("tiny")
    torch.manual_seed(0)
    model = build_model(config, arch).eval()
    if threshold is not None:
        set_threshold(model, threshold)
    profile, _ = profile_sampling(model, GaussianDiffusion(config.diffusion_steps), config,
                                  n=2, sampler="ddim", steps=steps, progress=False,
                                  meta={"arch": arch})
    return model, config, profile


@pytest.fixture(scope="module")
def snn():
    return _profile()


def test_no_spikes_means_no_ac_energy():
    _, _, silent = _profile(threshold=1e9)
    spike_layers = [i for i, l in enumerate(silent.layers) if l.binary_input]
    assert spike_layers and np.all(silent.input_rate[:, spike_layers] == 0)
    strict = energy_report(silent, load_profile("45nm-fp32"), "strict")
    assert strict.ac_mj == 0 and strict.mac_mj > 0
    paper = energy_report(silent, load_profile("45nm-fp32"), "paper")
    assert all(paper.layers[i].energy_mj == 0 for i in spike_layers)


@pytest.mark.parametrize("hardware", available_profiles())
def test_strict_is_never_below_paper(snn, hardware):
    _, _, profile = snn
    hw = load_profile(hardware)
    paper, strict = energy_report(profile, hw, "paper"), energy_report(profile, hw, "strict")
    assert np.all(strict.per_step_mj >= paper.per_step_mj)
    if hw.mac_pj > hw.ac_pj:  # analog-input layers cost MACs in strict
        assert strict.per_forward_mj > paper.per_forward_mj


def test_paper_convention_formula(snn):
    _, _, profile = snn
    hw = load_profile("45nm-fp32")
    report = energy_report(profile, hw, "paper")
    first = next(i for i, l in enumerate(profile.layers) if l.kind == "conv2d")
    sops = profile.synaptic_ops()
    expected = (hw.mac_pj * profile.layers[first].dense_macs
                + hw.ac_pj * (sops.sum(axis=1) - sops[:, first])) / 1e9
    np.testing.assert_allclose(report.per_step_mj, expected, rtol=1e-12)
    assert [l.op for l in report.layers].count("MAC") == 1
    assert report.per_image_mj == pytest.approx(report.per_step_mj.sum())


def test_neuron_updates_count_only_in_strict_with_a_figure(snn):
    _, _, profile = snn
    loihi = load_profile("loihi1")
    strict = energy_report(profile, loihi, "strict")
    neurons = sum(p.neurons for p in profile.populations) * profile.timesteps
    assert neurons * 52e-9 <= strict.neuron_mj <= neurons * 81e-9
    assert energy_report(profile, loihi, "paper").neuron_mj == 0
    assert energy_report(profile, load_profile("45nm-fp32"), "strict").neuron_mj == 0


def test_ann_costs_a_mac_per_dense_mac_in_both_conventions():
    model, config, profile = _profile("ann", steps=2)
    hw = load_profile("45nm-fp32")
    macs = count_macs(model, config)["macs_per_forward"]
    for convention in ("paper", "strict"):
        report = energy_report(profile, hw, convention)
        assert report.per_forward_mj == pytest.approx(macs * 4.6e-9, rel=1e-12)
        assert report.ac_mj == 0


def test_unknown_convention_is_refused(snn):
    with pytest.raises(SddpmError, match="unknown convention 'loose'"):
        energy_report(snn[2], load_profile("45nm-fp32"), "loose")


class _BinaryImageNet(torch.nn.Module):
    """A first conv whose input, the image, is binary: 'paper' still prices it as MACs."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.neuron = MultiStepIF(timesteps=2)
        self.conv2 = torch.nn.Conv2d(4, 1, 3, padding=1)

    def forward(self, x, t):
        h = self.conv1(x.repeat(2, 1, 1, 1))
        return self.conv2(self.neuron(h))


@pytest.mark.parametrize("hardware", available_profiles())
def test_strict_is_never_below_paper_with_a_binary_image(hardware):
    torch.manual_seed(0)
    model = _BinaryImageNet()
    x = (torch.rand(2, 1, 6, 6) > 0.5).float()
    with ActivityProfiler(model, 2) as p, torch.no_grad():
        model(x, torch.zeros(2, dtype=torch.long))
    profile = p.profile()
    assert profile.layers[0].binary_input and not profile.layers[0].per_timestep
    hw = load_profile(hardware)
    paper, strict = energy_report(profile, hw, "paper"), energy_report(profile, hw, "strict")
    assert strict.layers[0].op == paper.layers[0].op == "MAC"
    assert strict.per_forward_mj >= paper.per_forward_mj
