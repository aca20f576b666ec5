"""Checkpoints of the official SDDPM code, converted: the official model's own outputs.

The data (tests/data/reference_sddpm/README.md) were computed by the official code; a
converted model must give the same noise prediction and the same spikes in every layer.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sddpm.checkpoint import load_checkpoint, save_checkpoint
from sddpm.cli.main import main
from sddpm.files import file_sha256
from sddpm.models import count_params
from sddpm.neurons import NEURON_BACKENDS, MultiStepIF, if_multistep
from sddpm.presets import ModelConfig
from sddpm.reference_checkpoint import (
    convert_reference_checkpoint,
    expected_reference_tensors,
    reference_name,
)
from sddpm.sampling import model_from_checkpoint
from tests.reference_fixture import DATA, LAYOUTS, make_tie_variant


@pytest.fixture(scope="module")
def io():
    return dict(np.load(DATA / "io.npz"))


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Both layouts converted with the command, as a user does."""
    out = tmp_path_factory.mktemp("converted")
    paths = {}
    for layout in LAYOUTS:
        paths[layout] = out / f"{Path(layout).stem}.pt"
        assert main(["convert", "--from", "sddpm-reference", str(DATA / layout),
                     "-o", str(paths[layout])]) == 0
    return paths


def _run(model, io, key="x"):
    """eps in float64 and every layer's spike count, under the official layer names."""
    counts, hooks = {}, []
    for name, m in model.named_modules():
        if isinstance(m, MultiStepIF):
            hooks.append(m.register_forward_hook(
                lambda mod, i, o, name=name: counts.__setitem__(reference_name(name),
                                                                int(o.sum()))))
    with torch.no_grad():
        eps = model(torch.from_numpy(io[key]).double(), torch.from_numpy(io["t"]))
    for h in hooks:
        h.remove()
    return eps.numpy(), counts


def _relative(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("backend", NEURON_BACKENDS)
def test_converted_model_gives_the_official_output_and_spikes(converted, io, layout, backend):
    model, _ = model_from_checkpoint(converted[layout], neuron=backend)
    eps, counts = _run(model.double(), io)
    expected = json.loads((DATA / "spike_counts.json").read_text())
    assert counts == expected  # all 27 layers, 916,949 spikes
    # float64 to the last bits; what is left is the BLAS's summation order on this CPU
    assert _relative(eps, io["eps"]) < 1e-13
    assert np.abs(io["eps"]).max() > 1  # the comparison is not between tiny outputs


def test_both_layouts_convert_to_the_same_tensors(converted):
    a = load_checkpoint(converted[LAYOUTS[0]])
    b = load_checkpoint(converted[LAYOUTS[1]])
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["model_config"] == b["model_config"]


@pytest.mark.parametrize("backend", NEURON_BACKENDS)
def test_the_tie_variant_needs_v_greater_or_equal(converted, io, backend):
    model, payload = model_from_checkpoint(converted[LAYOUTS[0]], neuron=backend)
    make_tie_variant(model.state_dict())
    model = model.double()
    eps, counts = _run(model, io)
    assert counts == json.loads((DATA / "spike_counts_tie.json").read_text())
    assert _relative(eps, io["eps_tie"]) < 1e-13
    # the same model with a '>' neuron misses it by far
    strict_config = ModelConfig.from_dict({**payload["model_config"], "fires_on": ">"})
    strict = type(model)(strict_config, neuron=backend).double().eval()
    strict.load_state_dict(model.state_dict())
    eps_strict, counts_strict = _run(strict, io)
    # channel 0 sits on the threshold at all 4 steps: '>' fires at the 2nd and 4th only,
    # 2 spikes fewer at each of 2 x 32 x 32 positions
    assert counts["downblocks.0.neuron1"] - counts_strict["downblocks.0.neuron1"] == 4096
    assert _relative(eps_strict, io["eps_tie"]) > 0.1


@pytest.mark.parametrize("backend", NEURON_BACKENDS)
@pytest.mark.parametrize("precision", ["f64", "f32"])
def test_one_official_neuron_on_hand_made_inputs(backend, precision):
    data = np.load(DATA / "if_neuron_io.npz")
    dtype = torch.float64 if precision == "f64" else torch.float32
    x = torch.from_numpy(data["x_seq"]).to(dtype)  # [T=6, N=64]
    layer = MultiStepIF(timesteps=6, backend=backend, fires_on=">=")
    spikes = layer(x.reshape(6 * 1, 64)).reshape(6, 64)
    assert np.array_equal(spikes.numpy(), data[f"spikes_eval_{precision}"])
    assert np.array_equal(spikes.numpy(), data[f"spikes_train_{precision}"])
    # the documented sequence [1, 0, 0, 1, 0, 0]: '>=' fires on each one, '>' only once
    # the membrane has reached 2
    seq = torch.tensor([[1.0], [0], [0], [1], [0], [0]], dtype=dtype)
    assert if_multistep(seq, fires_on=">=").flatten().tolist() == [1, 0, 0, 1, 0, 0]
    assert if_multistep(seq, fires_on=">").flatten().tolist() == [0, 0, 0, 1, 0, 0]


def test_the_checkpoint_says_where_it_came_from(converted):
    payload = load_checkpoint(converted[LAYOUTS[1]])
    cfg, source = payload["model_config"], payload["converted_from"]
    assert cfg["fires_on"] == ">=" and cfg["timesteps"] == 4
    assert (cfg["ch"], cfg["ch_mult"], cfg["num_res_blocks"], cfg["image_channels"],
            cfg["diffusion_steps"]) == (32, [1, 2, 2], 1, 1, 1000)
    assert source["sha256"] == file_sha256(DATA / LAYOUTS[1])
    assert source["inferred"]["ch_mult"] == [1, 2, 2]
    assert source["given"] == {"timesteps": 4, "image_size": 32, "dataset": "fmnist"}
    assert source["parameters"] == 1_086_989 and source["if_layers"] == 27
    assert set(source["ignored_keys"]) == {"optim", "x_T"} and payload["step"] == 0
    assert payload["ema"] is None and payload["arch"] == "snn"
    model, _ = model_from_checkpoint(converted[LAYOUTS[1]])
    assert count_params(model) == 1_086_989


def test_a_model_trained_by_sddpm_keeps_the_strict_rule(tiny_checkpoint):
    model, payload = model_from_checkpoint(tiny_checkpoint)
    assert "fires_on" not in payload["model_config"] or payload["model_config"]["fires_on"] == ">"
    assert {m.fires_on for m in model.modules() if isinstance(m, MultiStepIF)} == {">"}


def test_another_timestep_count_is_recorded(tmp_path):
    payload = convert_reference_checkpoint(DATA / LAYOUTS[0], timesteps=8)
    assert payload["model_config"]["timesteps"] == 8
    model, _ = _model_of(payload, tmp_path)
    assert {m.timesteps for m in model.modules() if isinstance(m, MultiStepIF)} == {8}


def _model_of(payload, tmp_path):
    path = save_checkpoint(payload, tmp_path / "c.pt")
    return model_from_checkpoint(path)


# -- other architectures, inferred from names and shapes ---------------------------------

def _official_file(config, path, layout="official", seed=0):
    """An official-layout file of ``config`` from random tensors, named as conversion expects."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, (shape, dtype) in expected_reference_tensors(config).items():
        if dtype.is_floating_point:
            state[name] = torch.randn(shape, generator=g) * 0.05
            if name.endswith("running_var"):
                state[name] = state[name].abs() + 1.0
        else:
            state[name] = torch.tensor(3, dtype=dtype)
    payload = {"net_model": state, "optim": {}, "step": 1234, "x_T": torch.zeros(1)}
    torch.save(payload if layout == "official" else state, path)
    return state


@pytest.mark.parametrize("ch, ch_mult, blocks, channels, layout", [
    (8, (1, 2), 1, 1, "official"), (8, (1,), 2, 3, "bare"), (16, (1, 2, 3), 2, 3, "official"),
    (8, (2, 1, 2, 2), 3, 1, "bare")])
def test_the_architecture_is_read_from_the_tensors(ch, ch_mult, blocks, channels, layout,
                                                   tmp_path):
    config = ModelConfig("x", "x", 16, channels, ch=ch, ch_mult=ch_mult, num_res_blocks=blocks,
                         diffusion_steps=300, fires_on=">=")
    state = _official_file(config, tmp_path / "official.pt", layout=layout)
    payload = convert_reference_checkpoint(tmp_path / "official.pt", image_size=16)
    assert payload["step"] == (1234 if layout == "official" else 0)
    assert payload["converted_from"]["layout"].startswith(
        "official" if layout == "official" else "torch.save state_dict")
    cfg = payload["model_config"]
    assert (cfg["ch"], tuple(cfg["ch_mult"]), cfg["num_res_blocks"], cfg["image_channels"],
            cfg["diffusion_steps"]) == (ch, ch_mult, blocks, channels, 300)
    model, _ = _model_of(payload, tmp_path)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, state[reference_name(name)]), name
