import pytest
import torch

from sddpm.errors import SddpmError
from sddpm.models import build_model
from sddpm.neurons import (
    MultiStepIF,
    _norse_loop,
    _snntorch_loop,
    if_multistep,
    set_backend,
    set_threshold,
    spiking_layers,
)
from sddpm.presets import get_preset


def _currents(seed=0, shape=(4, 3, 5, 6, 7), scale=1.2, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=dtype) * scale).requires_grad_()


def test_if_fires_strictly_above_threshold_and_resets_to_zero():
    x = torch.tensor([[0.6], [0.4], [0.5], [1.0], [0.3]])  # v: .6 1.0 1.5->0 1.0 1.3->0
    spikes = if_multistep(x, threshold=1.0)
    assert spikes.flatten().tolist() == [0.0, 0.0, 1.0, 0.0, 1.0]


def test_fused_matches_snntorch_leaky_spikes_and_gradients():
    x = _currents()
    grads, outs = [], []
    for fn in (if_multistep, _snntorch_loop):
        x.grad = None
        s = fn(x, 1.0, 2.0)
        upstream = torch.randn(s.shape, generator=torch.Generator().manual_seed(1))
        (s * upstream).sum().backward()
        outs.append(s.detach())
        grads.append(x.grad.clone())
    assert torch.equal(outs[0], outs[1])
    assert outs[0].sum() > 0 and outs[0].mean() < 1
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("threshold", [1.0, 0.997, 1.003])
def test_norse_gives_identical_spikes(threshold):
    x = _currents(seed=3, dtype=torch.float64)
    a = if_multistep(x, threshold)
    b = _norse_loop(x, threshold, 2.0)
    c = _snntorch_loop(x, threshold, 2.0)
    assert torch.equal(a, b) and torch.equal(a, c)


def test_multistep_module_unfolds_timestep_major():
    layer = MultiStepIF(timesteps=2)
    x = torch.tensor([[0.7], [0.2], [0.7], [0.2]])  # T=2, B=2 -> sample 0 gets .7,.7
    assert layer(x).flatten().tolist() == [0.0, 0.0, 1.0, 0.0]


def test_whole_model_same_output_with_norse_backend():
    torch.manual_seed(0)
    model = build_model(get_preset("tiny"), "snn").double().eval()
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    t = torch.tensor([1, 500, 999])
    with torch.no_grad():
        ref = model(x, t)
        set_backend(model, "norse")
        other = model(x, t)
    assert torch.equal(ref, other)


def test_set_threshold_reaches_every_neuron_and_rejects_bad_values():
    model = build_model(get_preset("tiny"), "snn")
    set_threshold(model, 0.998)
    assert {n.threshold for n in spiking_layers(model)} == {0.998}
    assert len(spiking_layers(model)) > 5
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(SddpmError):
            set_threshold(model, bad)


def test_lower_threshold_changes_the_output():
    torch.manual_seed(0)
    model = build_model(get_preset("tiny"), "snn").eval()
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([10, 900])
    with torch.no_grad():
        a = model(x, t)
        set_threshold(model, 0.5)
        b = model(x, t)
    assert not torch.allclose(a, b)


def test_a_threshold_map_sets_each_population_and_refuses_typos(tmp_path):
    from sddpm.neurons import parse_threshold, thresholds_by_population

    model = build_model(get_preset("tiny"), "snn")
    values = thresholds_by_population(model, {"up.*": 0.99, "up.0.neuron1": 0.97})
    assert values["up.0.neuron1"] == 0.97  # a later key wins where both match
    assert {v for k, v in values.items() if k.startswith("up.") and k != "up.0.neuron1"} == {0.99}
    assert {v for k, v in values.items() if not k.startswith("up.")} == {1.0}
    set_threshold(model, {"down.*": 0.995})
    assert {n.threshold for n in spiking_layers(model)} == {0.995, 1.0}
    with pytest.raises(SddpmError, match="'upp.*' matches no IF population"):
        set_threshold(model, {"upp.*": 0.99})
    with pytest.raises(SddpmError, match="positive number"):
        set_threshold(model, {"up.*": -1})
    (tmp_path / "up.json").write_text('{"up.*": 0.998}')
    assert parse_threshold(str(tmp_path / "up.json")) == {"up.*": 0.998}
    assert parse_threshold('{"up.*": 0.998}') == {"up.*": 0.998}
    assert parse_threshold("0.998") == 0.998
    (tmp_path / "bad.json").write_text("{up: 1}")
    for bad, message in (("nothing.json", "neither a number nor a JSON file"),
                         (str(tmp_path / "bad.json"), "not valid JSON"), ("[1]", "neither"),
                         ('{"up.*": "x"}', "positive number"), ("-2", "positive number")):
        with pytest.raises(SddpmError, match=message):
            parse_threshold(bad)
