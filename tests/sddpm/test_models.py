import json

import pytest
import torch

from sddpm.models import build_model, count_macs, count_params
from sddpm.presets import PRESETS, get_preset
from tests.conftest import run_cli


def test_cifar10_parameter_counts_match_the_paper_models():
    config = get_preset("cifar10")
    assert count_params(build_model(config, "snn")) == 66_696_413
    assert count_params(build_model(config, "ann")) == 67_602_691


def test_cifar10_dense_macs():
    config = get_preset("cifar10")
    ann = count_macs(build_model(config, "ann"), config)
    assert ann["macs_per_forward"] == pytest.approx(6.3495e9, rel=1e-3)
    snn = count_macs(build_model(config, "snn"), config)
    assert snn["macs_per_forward"] == pytest.approx(6.481e9, rel=1e-3)


@pytest.mark.parametrize("preset", ["tiny", "digits-flat", "fmnist-small"])
@pytest.mark.parametrize("arch", ["snn", "ann"])
def test_forward_shape(preset, arch):
    config = get_preset(preset)
    model = build_model(config, arch).eval()
    x = torch.randn(2, config.image_channels, config.image_size, config.image_size)
    with torch.no_grad():
        eps = model(x, torch.tensor([0, 999]))
    assert eps.shape == x.shape and torch.isfinite(eps).all()


def test_snn_timesteps_change_the_fused_batch():
    config = get_preset("tiny").with_timesteps(8)
    model = build_model(config, "snn").eval()
    seen = []
    model.encoder.conv1.register_forward_hook(lambda m, i, o: seen.append(o.shape[0]))
    with torch.no_grad():
        model(torch.randn(3, 1, 8, 8), torch.tensor([1, 2, 3]))
    assert seen == [24]


def test_snn_convolutions_inside_the_network_read_binary_spikes():
    torch.manual_seed(0)
    model = build_model(get_preset("tiny"), "snn").eval()
    inputs = {}
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Conv2d) and "shortcut" not in name and name not in (
                "encoder.conv1", "decoder.conv"):
            m.register_forward_hook(lambda mod, i, o, n=name: inputs.__setitem__(n, i[0]))
    with torch.no_grad():
        model(torch.randn(2, 1, 8, 8), torch.tensor([3, 700]))
    assert len(inputs) >= 8
    for name, x in inputs.items():
        assert set(x.unique().tolist()) <= {0.0, 1.0}, name
    assert sum(x.sum().item() for x in inputs.values()) > 0, "no neuron fired"


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds_and_runs(name):
    config = PRESETS[name]
    for arch in ("snn", "ann"):
        model = build_model(config, arch).eval()
        assert count_params(model) > 0
        if config.ch <= 32:  # the full-size presets: building them is the check
            x = torch.zeros(1, config.image_channels, config.image_size, config.image_size)
            with torch.no_grad():
                assert model(x, torch.tensor([5])).shape == x.shape


def test_info_cli_json():
    result = run_cli("sddpm", "info", "--preset", "cifar10", "--arch", "ann", "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["params"] == 67_602_691
    assert info["macs_per_forward"] == pytest.approx(6.3495e9, rel=1e-3)
