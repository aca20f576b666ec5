"""The exported graph, run by the reference executor, is the torch model: spike for spike."""

import json

import numpy as np
import pytest
import torch

from sddpm.checkpoint import SHIPPED_CHECKPOINT
from sddpm.errors import SddpmError
from sddpm.export.executor import predict_noise
from sddpm.export.nir_file import read_nir, write_nir
from sddpm.export.torch_to_nir import export_nir
from sddpm.models import build_model
from sddpm.neurons import MultiStepIF
from sddpm.presets import get_preset
from sddpm.sampling import model_from_checkpoint


def _randomise_batchnorm(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    return model


def _outputs_of(model, x, t, kind):
    """eps and the outputs of every ``kind`` module of one forward pass, by module path."""
    seen, hooks = {}, []
    for name, m in model.named_modules():
        if isinstance(m, kind):
            hooks.append(m.register_forward_hook(
                lambda mod, i, o, name=name: seen.__setitem__(name, o.detach())))
    with torch.no_grad():
        eps = model(x, t)
    for h in hooks:
        h.remove()
    return eps, seen


def _torch_spikes(model, x, t):
    return _outputs_of(model, x, t, MultiStepIF)


def check_export(model, tmp_path, x, t, diffusion_step=None):
    """Export, write, read back, execute; spikes everywhere equal, eps within 1e-6."""
    model = model.double().eval()
    graph = read_nir(write_nir(export_nir(model, diffusion_step=diffusion_step),
                               tmp_path / "model.nir"))
    eps_torch, spikes_torch = _torch_spikes(model, x, t)
    eps_nir, spikes_nir = predict_noise(graph, x, t)
    T = model.config.timesteps
    info = json.loads(graph.metadata["sddpm"])
    covered = set()
    for pop in info["populations"]:
        lo, hi = pop["channels"]
        expected = spikes_torch[pop["torch"]].reshape(T, x.shape[0], *spikes_torch[pop["torch"]].shape[1:])
        assert torch.equal(spikes_nir[pop["node"]], expected[:, :, lo:hi]), pop["node"]
        covered.add(pop["torch"])
    assert covered == set(spikes_torch)  # every torch population is in the graph
    rates = [float(s.mean()) for s in spikes_nir.values()]
    assert 0 < np.mean(rates) < 1  # the comparison is not between silent networks
    rel = float((eps_nir - eps_torch).norm() / eps_torch.norm())
    assert rel < 1e-6
    return graph, rel


def _inputs(config, batch=2, t=123):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, config.image_channels, config.image_size, config.image_size,
                    generator=g, dtype=torch.float64)
    return x, torch.full((batch,), t)


@pytest.mark.parametrize("preset", ["tiny", "digits-flat", "fmnist-small"])
@pytest.mark.parametrize("diffusion_step", [None, 123])
def test_random_init_export_matches_torch(preset, diffusion_step, tmp_path):
    config = get_preset(preset)
    torch.manual_seed(0)
    model = _randomise_batchnorm(build_model(config, "snn"))
    graph, _ = check_export(model, tmp_path, *_inputs(config), diffusion_step=diffusion_step)
    temb_inputs = [n for n in graph.inputs if n.startswith("temb:")]
    assert bool(temb_inputs) == (diffusion_step is None)


@pytest.mark.parametrize("diffusion_step", [None, 123])
@pytest.mark.parametrize("res_blocks", [1, 2])
def test_standard_block_exports_spike_for_spike(diffusion_step, res_blocks, tmp_path):
    from dataclasses import replace

    from sddpm.snn_unet import StandardSpikingResBlock

    config = replace(get_preset("tiny"), name="tiny-standard", num_res_blocks=res_blocks,
                     block="standard")
    torch.manual_seed(0)
    model = _randomise_batchnorm(build_model(config, "snn")).double().eval()
    x, t = _inputs(config)
    _, outputs = _outputs_of(model, x, t, StandardSpikingResBlock)
    values = torch.cat([o.flatten() for o in outputs.values()]).unique()
    # the block's output is two spike trains added: the 2s (both at once) occur and
    # must cross the graph's fan-in as they do in torch
    assert set(values.tolist()) == {0.0, 1.0, 2.0}
    graph, _ = check_export(model, tmp_path, x, t, diffusion_step=diffusion_step)
    info = json.loads(graph.metadata["sddpm"])
    torch_pops = {p["torch"] for p in info["populations"]}
    assert {"down.0.neuron0", "down.0.neuron2", "up.0.shortcut.2"} <= torch_pops


def test_trained_tiny_export_matches_torch(tiny_checkpoint, tmp_path):
    model, _ = model_from_checkpoint(tiny_checkpoint)
    check_export(model, tmp_path, *_inputs(model.config, batch=3))


@pytest.mark.skipif(not SHIPPED_CHECKPOINT.is_file(), reason="no shipped checkpoint")
@pytest.mark.parametrize("t", [10, 900])
def test_trained_cpu_preset_export_matches_torch(t, tmp_path):
    model, _ = model_from_checkpoint(SHIPPED_CHECKPOINT)
    check_export(model, tmp_path, *_inputs(model.config, batch=2, t=t))


@pytest.mark.parametrize("neuron", ["snntorch", "norse"])
def test_models_trained_with_either_neuron_library_export(neuron, tmp_path):
    from sddpm.train import TrainConfig, Trainer

    Trainer(TrainConfig(preset="tiny", neuron=neuron, steps=3, ckpt_every=3, warmup=1,
                        sample_every=1000, out=str(tmp_path / "run"))).run()
    model, payload = model_from_checkpoint(tmp_path / "run" / "last.pt")
    assert payload["neuron"] == neuron
    check_export(model, tmp_path, *_inputs(model.config))


def test_each_layer_keeps_its_own_threshold(tmp_path):
    config = get_preset("tiny")
    torch.manual_seed(0)
    model = build_model(config, "snn")
    rng = np.random.default_rng(0)
    layers = [m for m in model.modules() if isinstance(m, MultiStepIF)]
    for m in layers:
        m.threshold = float(rng.uniform(0.7, 1.3))
    graph, _ = check_export(model, tmp_path, *_inputs(config))
    info = json.loads(graph.metadata["sddpm"])
    by_path = dict((n, m.threshold) for n, m in model.named_modules() if isinstance(m, MultiStepIF))
    for pop in info["populations"]:
        assert np.all(graph.nodes[pop["node"]].v_threshold == by_path[pop["torch"]])


@pytest.mark.parametrize("res_blocks, T", [(2, 3), (3, 1)])
def test_other_depths_and_timesteps_export_exactly(res_blocks, T, tmp_path):
    from dataclasses import replace

    config = replace(get_preset("tiny"), name=f"tiny-{res_blocks}", num_res_blocks=res_blocks)
    config = config.with_timesteps(T)
    torch.manual_seed(0)
    model = _randomise_batchnorm(build_model(config, "snn"))
    check_export(model, tmp_path, *_inputs(config))


def test_export_leaves_the_model_as_it_was():
    config = get_preset("tiny")
    torch.manual_seed(0)
    model = build_model(config, "snn").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    export_nir(model, diffusion_step=5)
    assert model.training
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    model.eval()(*[a.float() for a in _inputs(config)[:1]], _inputs(config)[1])  # still runs


def test_unsupported_models_are_named(tmp_path):
    config = get_preset("tiny")
    with pytest.raises(SddpmError, match="only the Spiking U-Net exports.*AnnUNet"):
        export_nir(build_model(config, "ann"))
    model = build_model(config, "snn")
    model.down[0].shortcut = torch.nn.Sequential()
    with pytest.raises(SddpmError, match=r"cannot export down\.0\.shortcut: it is a Sequential"):
        export_nir(model)
    model = build_model(config, "snn")
    model.down[0].conv1 = torch.nn.Conv2d(8, 8, 3, padding=2, dilation=2)
    with pytest.raises(SddpmError, match=r"cannot export down\.0\.conv1: dilation=\(2, 2\)"):
        export_nir(model)
    model = build_model(config, "snn")
    model.up[2] = torch.nn.ReLU()
    with pytest.raises(SddpmError, match=r"cannot export up\.2: it is a ReLU"):
        export_nir(model)
