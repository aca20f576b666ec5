"""Fixed point: the quantisation, its PyTorch emulation, and Lava ``fixed_pt`` bit for bit.

The Lava tests compile real networks (one OS process per Lava process) on the tiny
preset; "busy" networks have every threshold scaled down so that every population
fires and no path goes unchecked.
"""

import nir
import numpy as np
import pytest
import torch

from sddpm.diffusion import GaussianDiffusion, sample
from sddpm.errors import SddpmError
from sddpm.export.executor import ExportedNoisePredictor
from sddpm.export.graph import neighbours
from sddpm.export.nir_to_lava import LavaNetwork
from sddpm.export.quantize import (
    BIAS_MANT_BITS,
    quantize_graph,
    read_fixed_point,
    scale_groups,
    summed_bias,
    write_fixed_point,
)
from sddpm.export.torch_to_nir import export_nir
from sddpm.hardware.deployed import DeployedEnergy
from sddpm.models import build_model
from sddpm.neurons import MultiStepIF
from sddpm.presets import get_preset
from sddpm.simulations.denoise import FixedPointReference, GraphReference, LavaNoisePredictor
from sddpm.simulations.fixed_emulator import FixedPointEmulator, FixedPointNoisePredictor
from sddpm.simulations.lava_runner import LavaSession


def _graph(threshold_scale=1.0, T=4, seed=0):
    config = get_preset("tiny").with_timesteps(T)
    torch.manual_seed(seed)
    model = build_model(config, "snn").double().eval()
    for m in model.modules():
        if isinstance(m, MultiStepIF):
            m.threshold *= threshold_scale
    return config, export_nir(model)


def _x(batch, seed=5):
    return torch.randn(batch, 1, 8, 8, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64)


def test_quantisation_keeps_every_integer_in_loihis_ranges():
    _, graph = _graph()
    fixed = quantize_graph(graph, weight_bits=8)
    preds, succs = neighbours(graph)
    for conv, w in fixed.weights.items():
        assert np.abs(w).max() <= 127
        # a conv feeding several targets is one Lava Conv: its targets share one scale
        assert len({fixed.scale[t] for t in succs[conv]}) == 1
    for group in scale_groups(graph):
        convs = {p for t in group for p in preds[t] if isinstance(graph.nodes[p], nir.Conv2d)}
        if convs:  # the largest weight of a group takes the top of the range
            assert max(np.abs(fixed.weights[c]).max() for c in convs) == 127
    for pop, vth in fixed.vth.items():
        theta = float(np.unique(graph.nodes[pop].v_threshold)[0])
        assert vth == round(theta * fixed.scale[pop])
        assert np.abs(fixed.bias_mant[pop]).max() < 2 ** (BIAS_MANT_BITS - 1)
        exact = summed_bias(graph, pop) * fixed.scale[pop] * 64
        step = 2.0 ** fixed.bias_exp[pop]
        assert np.all(np.abs(fixed.effective_bias(pop) - exact) <= step / 2 + 1e-9)
    fewer = quantize_graph(graph, weight_bits=4)
    assert max(np.abs(w).max() for w in fewer.weights.values()) == 7
    with pytest.raises(SddpmError, match="weight-bits must lie in"):
        quantize_graph(graph, weight_bits=9)


def test_fixed_point_file_round_trips_and_refuses_another_graph(tmp_path):
    _, graph = _graph()
    fixed = quantize_graph(graph)
    path = write_fixed_point(fixed, tmp_path / "fixed.h5")
    back = read_fixed_point(path, graph)
    assert back.scale == fixed.scale and back.vth == fixed.vth
    for name in fixed.weights:
        assert np.array_equal(back.weights[name], fixed.weights[name])
    for name in fixed.vth:
        assert np.array_equal(back.effective_bias(name), fixed.effective_bias(name))
    _, other = _graph(T=2)
    other.nodes.pop(next(n for n in other.nodes if "conv" in n))
    with pytest.raises(SddpmError, match="does not fit"):
        read_fixed_point(path, other)
    (tmp_path / "junk.h5").write_bytes(b"junk")
    with pytest.raises(SddpmError, match="cannot be read"):
        read_fixed_point(tmp_path / "junk.h5", graph)


def test_emulation_is_the_same_in_float32_and_float64():
    config, graph = _graph(threshold_scale=0.3)
    fixed = quantize_graph(graph)
    inputs = FixedPointNoisePredictor(graph, fixed).integer_inputs(_x(3), torch.tensor([5, 400,
                                                                                       900]))
    out32, spikes32 = FixedPointEmulator(graph, fixed, torch.float32).run(inputs, 4)
    out64, spikes64 = FixedPointEmulator(graph, fixed, torch.float64).run(inputs, 4)
    assert torch.equal(out32["stream"].double(), out64["stream"])
    assert all(torch.equal(spikes32[k].double(), spikes64[k]) for k in spikes64)
    assert all(s.sum() > 0 for s in spikes64.values())


def _lava_lif_reset(a_in, bias, vth):
    """Lava's ``PyLifResetModelBitAcc`` over T steps (du = 4095, dv = 0), transcribed."""
    v, spikes = np.zeros(a_in.shape[1:], dtype=np.int64), []
    for a in a_in:
        v = np.clip(v + (a.astype(np.int64) << 6) + bias, -(2 ** 23 - 1), 2 ** 23 - 1)
        s = v > (vth << 6)
        v = np.where(s, 0, v)
        spikes.append(s)
    return np.stack(spikes)


def _edge(vth, fires_on=">"):
    """``encoder.neuron`` at threshold ``vth`` and inputs around it: ``(emulate, a_in, rng)``
    where ``emulate(bias)`` is the emulated population's spikes."""
    _, graph = _graph()
    fixed = quantize_graph(graph)
    fixed.fires_on = fires_on
    pop = "encoder.neuron"
    fixed.vth[pop] = vth
    emulator = FixedPointEmulator(graph, fixed)
    C, H, W = np.shape(graph.nodes[pop].v_threshold)
    rng = np.random.default_rng(vth)
    a_in = rng.choice([vth - 1, vth, vth - 2, 0, 1], size=(5, 2, C, H, W))

    def emulate(bias):
        spikes = emulator._neuron(pop, torch.as_tensor(a_in, dtype=torch.float32),
                                  torch.as_tensor(bias, dtype=torch.float32)[None, :, None, None])
        return spikes.numpy() > 0

    return emulate, a_in, rng, fixed.lava_vth(pop), C


@pytest.mark.parametrize("vth", [3, 40, 300, 5000, 2 ** 17 - 1])
def test_the_emulated_neuron_fires_as_lavas_at_the_threshold_edge(vth):
    # v lands exactly on vth << 6, one below and one above, at every threshold size:
    # float32 must not blur Lava's strict '>'; positive clipping changes nothing
    emulate, a_in, rng, _, C = _edge(vth)
    bias = rng.choice([-1, 0, 1, 63, 64, 65], size=C)
    expected = _lava_lif_reset(a_in, bias[None, :, None, None], vth)
    assert np.array_equal(emulate(bias), expected)
    assert 0 < expected.mean() < 1


@pytest.mark.parametrize("vth", [1, 3, 40, 5000, 2 ** 17 - 1])
def test_greater_or_equal_on_integers_is_lavas_strict_rule_one_below(vth):
    # a '>=' population (the official SDDPM neuron): the emulation fires on
    # v >= vth << 6 itself; Lava, given vth - 1, fires on v > (vth - 1) << 6, the same
    # wherever v stays on the grid of 64 that quantize_graph keeps it on
    emulate, a_in, rng, lava_vth, C = _edge(vth, ">=")
    assert lava_vth == vth - 1
    on_grid = rng.choice([-64, 0, 64, 128], size=C)
    got = emulate(on_grid)
    assert np.array_equal(got, _lava_lif_reset(a_in, on_grid[None, :, None, None], lava_vth))
    assert not np.array_equal(got, _lava_lif_reset(a_in, on_grid[None, :, None, None], vth))
    # off the grid the emulation still fires on v >= vth << 6 (transcribed here)
    off_grid = rng.choice([-1, 1, 63, 65], size=C)
    v, expected = np.zeros(a_in.shape[1:], dtype=np.int64), []
    for a in a_in:
        v = v + (a.astype(np.int64) << 6) + off_grid[None, :, None, None]
        expected.append(v >= (vth << 6))
        v = np.where(expected[-1], 0, v)
    assert np.array_equal(emulate(off_grid), np.stack(expected))


def test_the_emulation_refuses_what_loihis_24_bit_states_cannot_hold():
    config, graph = _graph()
    fixed = quantize_graph(graph)
    pop = "encoder.neuron"
    with pytest.raises(SddpmError, match="beyond the 24-bit state"):
        fixed.host_current(pop, np.full((4, 8, 8), 1e6))
    # the most negative bias drives v below -2^23 within 16 steps, where Lava clips
    fixed.bias_mant[pop] = np.full_like(fixed.bias_mant[pop], -4096)
    fixed.bias_exp[pop] = np.full_like(fixed.bias_exp[pop], 7)
    inputs = FixedPointNoisePredictor(graph, fixed).integer_inputs(_x(1), torch.tensor([5]))
    FixedPointEmulator(graph, fixed).run(inputs, 12)  # not yet there
    with pytest.raises(SddpmError, match="24-bit range"):
        FixedPointEmulator(graph, fixed).run(inputs, 40)


def test_more_weight_bits_track_the_float_network_closer():
    config, graph = _graph(threshold_scale=0.5)
    x, t = _x(4), torch.tensor([10, 200, 500, 900])
    eps_float, _ = ExportedNoisePredictor(graph)(x, t)
    errors = {}
    for bits in (3, 5, 8):
        eps, _ = FixedPointNoisePredictor(graph, quantize_graph(graph, bits))(x, t)
        errors[bits] = float((eps - eps_float).norm() / eps_float.norm())
    assert errors[8] < errors[5] < errors[3], errors
    assert errors[8] > 0  # quantisation always moves something


@pytest.mark.parametrize("threshold_scale, T, batches", [(1.0, 4, [2]), (0.1, 4, [1, 3]),
                                                         (0.2, 1, [2])])
@pytest.mark.slow  # compiles and runs a multi-process Lava network
def test_lava_fixed_pt_equals_the_emulation_spike_for_spike(threshold_scale, T, batches):
    config, graph = _graph(threshold_scale, T)
    fixed = quantize_graph(graph)
    predictor = FixedPointNoisePredictor(graph, fixed)
    session = LavaSession(LavaNetwork(graph, T, buffer_steps=5, tap_spikes=True, fixed=fixed))
    assert session.tag == "fixed_pt"
    try:
        for k, K in enumerate(batches):
            x, t = _x(K, seed=k), torch.arange(K) * 300 + 10
            feeds = predictor.host.inputs(x, t)
            outputs, spikes = predictor.emulator.run(predictor.integer_inputs(x, t), T)
            stream = session.forward([{n: v[b].numpy() for n, v in feeds.items()}
                                      for b in range(K)])
            values = fixed.output_value("stream", outputs["stream"].double().numpy())
            values = values + summed_bias(graph, "stream")[:, None, None]
            assert np.array_equal(stream, values.transpose(1, 0, 2, 3, 4))
            for name, s in session.spikes.items():
                assert np.array_equal(s, spikes[name].transpose(0, 1).numpy()), (K, name)
            if threshold_scale < 1:
                assert all(s.sum() > 0 for s in session.spikes.values())
    finally:
        session.stop()


@pytest.mark.slow  # compiles and runs a multi-process Lava network
def test_three_ddim_steps_in_lava_fixed_pt():
    config, graph = _graph(threshold_scale=0.5)
    fixed = quantize_graph(graph)
    session = LavaSession(LavaNetwork(graph, config.timesteps, tap_spikes=True, fixed=fixed))
    try:
        predictor = LavaNoisePredictor(graph, session, reference=FixedPointReference(graph, fixed),
                                       float_reference=GraphReference(graph),
                                       chip_energy=DeployedEnergy())
        diffusion = GaussianDiffusion(config.diffusion_steps)
        sample(predictor, diffusion, (2, 1, 8, 8), sampler="ddim", steps=3, seed=0,
               progress=False)
    finally:
        session.stop()
    for step in predictor.comparisons:
        assert sum(step.mismatches.values()) == 0 < sum(step.reference_spikes.values())
        assert step.eps_rel_error < 1e-12  # equal integer streams, float decoding
        assert step.energy_lava_mj == step.energy_reference_mj > 0
    # what quantisation changes is recorded beside it (its size: see the README)
    assert len(predictor.float_comparisons) == 3
    assert all(step.eps_rel_error > 0 for step in predictor.float_comparisons)


def test_quantisation_aware_network_starts_as_the_deployment_and_learns():
    from sddpm.simulations.finetune import QuantisationAwareNetwork

    config, graph = _graph(threshold_scale=0.5)
    fixed = quantize_graph(graph)
    qat = QuantisationAwareNetwork(graph, fixed)
    x, t = _x(3), torch.tensor([10, 400, 800])
    tuned_graph, tuned_fixed = qat.deployed()
    assert all(np.array_equal(tuned_fixed.weights[c], fixed.weights[c]) for c in fixed.weights)
    eps_deployed, _ = FixedPointNoisePredictor(graph, fixed)(x, t)
    assert torch.equal(qat(x, t), eps_deployed)
    # gradients reach the shadow weights through SLAYER's surrogate and quantize
    target = torch.randn(eps_deployed.shape, generator=torch.Generator().manual_seed(1),
                         dtype=torch.float64)
    loss = torch.nn.functional.mse_loss(qat(x, t), target)
    loss.backward()
    assert sum(float(p.grad.abs().sum()) for p in qat.shadow) > 0
    optimiser = torch.optim.SGD(qat.shadow.parameters(), lr=0.05)
    optimiser.step()
    tuned_graph, tuned_fixed = qat.deployed()
    changed = sum(int((tuned_fixed.weights[c] != fixed.weights[c]).sum()) for c in fixed.weights)
    assert changed > 0 and max(np.abs(w).max() for w in tuned_fixed.weights.values()) <= 127
    # the fine-tuned integers are what the emulation of the new bundle computes
    with torch.no_grad():
        assert torch.equal(qat(x, t), FixedPointNoisePredictor(tuned_graph, tuned_fixed)(x, t)[0])
