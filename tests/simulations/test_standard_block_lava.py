"""The ablation's standard block in Lava: its spike shortcuts (two spike trains summed on
the next population's fan-in) run as the torch model does, in floating and fixed point.

Tiny preset with randomised BatchNorm statistics, so that both spike trains of a block
fire at once somewhere (the {0, 1, 2} sums) and every population is busy.
"""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from sddpm.export.executor import HostSide, NirExecutor
from sddpm.export.nir_to_lava import LavaNetwork
from sddpm.export.quantize import quantize_graph, summed_bias
from sddpm.export.torch_to_nir import export_nir
from sddpm.models import build_model
from sddpm.neurons import MultiStepIF
from sddpm.presets import get_preset
from sddpm.simulations.fixed_emulator import FixedPointNoisePredictor
from sddpm.simulations.lava_runner import LavaSession
from tests.export.test_torch_to_nir import _randomise_batchnorm, _torch_spikes


def _standard_model(threshold_scale=1.0):
    config = replace(get_preset("tiny"), name="tiny-standard", block="standard")
    torch.manual_seed(0)
    model = _randomise_batchnorm(build_model(config, "snn")).double().eval()
    for m in model.modules():
        if isinstance(m, MultiStepIF):
            m.threshold *= threshold_scale
    return config, model


def _x(batch, seed=5):
    return torch.randn(batch, 1, 8, 8, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64)


@pytest.mark.slow  # compiles and runs a multi-process Lava network
def test_standard_block_in_lava_float_agrees_with_torch_on_every_spike():
    config, model = _standard_model()
    graph = export_nir(model)
    session = LavaSession(LavaNetwork(graph, config.timesteps, tap_spikes=True))
    x, t = _x(2), torch.tensor([30, 700])
    try:
        feeds = HostSide(graph).inputs(x, t)
        stream = session.forward([{k: v[b].numpy() for k, v in feeds.items()} for b in range(2)])
        lava = dict(session.spikes)
    finally:
        session.stop()
    outputs, _ = NirExecutor(graph).run(feeds, config.timesteps)
    np.testing.assert_allclose(stream, outputs["stream"].transpose(0, 1).numpy(), atol=1e-12)
    _, reference = _torch_spikes(model, x, t)

    T, total, differ = config.timesteps, 0, 0
    for pop in json.loads(graph.metadata["sddpm"])["populations"]:
        lo, hi = pop["channels"]
        s = reference[pop["torch"]]
        expected = s.reshape(T, 2, *s.shape[1:])[:, :, lo:hi].transpose(0, 1).numpy()
        total += expected.size
        differ += int((lava[pop["node"]] != expected).sum())
    assert differ == 0 and total > 0
    assert 0 < np.mean([s.mean() for s in lava.values()]) < 1


@pytest.mark.slow  # compiles and runs a multi-process Lava network
def test_standard_block_in_lava_fixed_pt_equals_the_emulation_bit_for_bit():
    config, model = _standard_model(threshold_scale=0.5)
    graph = export_nir(model)
    fixed = quantize_graph(graph)
    predictor = FixedPointNoisePredictor(graph, fixed)
    session = LavaSession(LavaNetwork(graph, config.timesteps, tap_spikes=True, fixed=fixed))
    assert session.tag == "fixed_pt"
    x, t = _x(2, seed=1), torch.tensor([10, 310])
    try:
        feeds = predictor.host.inputs(x, t)
        outputs, spikes = predictor.emulator.run(predictor.integer_inputs(x, t),
                                                 config.timesteps)
        stream = session.forward([{n: v[b].numpy() for n, v in feeds.items()} for b in range(2)])
        lava = dict(session.spikes)
    finally:
        session.stop()
    values = fixed.output_value("stream", outputs["stream"].double().numpy())
    values = values + summed_bias(graph, "stream")[:, None, None]
    assert np.array_equal(stream, values.transpose(1, 0, 2, 3, 4))
    for name, s in lava.items():
        assert np.array_equal(s, spikes[name].transpose(0, 1).numpy()), name
    assert sum(s.sum() for s in lava.values()) > 0


def test_fine_tuning_keeps_the_unit_maps_one_synapse_per_neuron():
    from sddpm.simulations.finetune import QuantisationAwareNetwork

    config, model = _standard_model(threshold_scale=0.5)
    graph = export_nir(model)
    before = {c: np.array(node.weight) for c, node in graph.nodes.items()
              if hasattr(node, "weight")}
    qat = QuantisationAwareNetwork(graph, quantize_graph(graph))
    x, t = _x(2), torch.tensor([10, 600])
    target = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(3),
                         dtype=torch.float64)
    torch.nn.functional.mse_loss(qat(x, t), target).backward()
    torch.optim.SGD(qat.shadow.parameters(), lr=0.5).step()
    tuned, _ = qat.deployed()
    units = [c for c in qat.convs if c.endswith((".out", ".shortcut"))]
    assert units
    for c in units:
        eye = np.eye(graph.nodes[c].weight.shape[0])[:, :, None, None]
        assert np.array_equal(tuned.nodes[c].weight != 0, eye != 0), c
    # the other maps did learn
    assert any(not np.array_equal(tuned.nodes[c].weight, before[c])
               for c in qat.convs if c not in units)
