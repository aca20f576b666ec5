"""Lava's CPU backend (floating point) runs the exported network: checked against torch.

Each test compiles a real Lava network (one OS process per Lava process) and runs it;
the tiny preset keeps that to seconds.
"""

import json

import numpy as np
import pytest
import torch

from sddpm.diffusion import GaussianDiffusion, sample
from sddpm.export.executor import HostSide, NirExecutor
from sddpm.export.nir_to_lava import LavaNetwork, upsample_matrix
from sddpm.export.torch_to_nir import export_nir
from sddpm.hardware.deployed import DeployedEnergy
from sddpm.models import build_model
from sddpm.presets import get_preset
from sddpm.simulations.denoise import LavaNoisePredictor, ModelReference
from sddpm.simulations.lava_runner import LavaSession


def test_upsample_matrix_is_nearest_upsampling():
    x = np.random.default_rng(0).random((3, 2, 4))  # (W, H, C)
    up = (upsample_matrix(x.shape, 2) @ x.ravel()).reshape(6, 4, 4)
    expected = x.repeat(2, axis=0).repeat(2, axis=1)
    assert np.array_equal(up, expected)


@pytest.fixture(scope="module")
def tiny_lava():
    config = get_preset("tiny")
    torch.manual_seed(0)
    model = build_model(config, "snn").double().eval()
    graph = export_nir(model)
    session = LavaSession(LavaNetwork(graph, config.timesteps, tap_spikes=True))
    yield config, model, graph, session
    session.stop()


@pytest.mark.slow  # compiles and runs a multi-process Lava network
def test_two_images_pipelined_equal_the_reference_executor(tiny_lava):
    config, model, graph, session = tiny_lava
    host = HostSide(graph)
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    t = torch.tensor([30, 700])
    feeds = host.inputs(x, t)
    outputs, spikes = NirExecutor(graph).run(feeds, config.timesteps)
    before = session.lava_steps
    stream = session.forward([{k: v[b].numpy() for k, v in feeds.items()} for b in range(2)])
    # pipelined: the second image costs T more steps, not another T + latency
    net = session.net
    assert session.lava_steps - before == np.ceil(
        (net.schedule.steps_per_forward(config.timesteps) + config.timesteps) / config.timesteps
    ) * config.timesteps
    np.testing.assert_allclose(stream, outputs["stream"].transpose(0, 1).numpy(), atol=1e-12)
    rates = []
    for name, s in session.spikes.items():
        assert np.array_equal(s, spikes[name].transpose(0, 1).numpy()), name
        rates.append(s.mean())
    assert 0 < np.mean(rates) < 1


@pytest.mark.slow  # compiles and runs a multi-process Lava network
def test_three_ddim_steps_in_lava_match_torch(tiny_lava):
    config, model, graph, session = tiny_lava
    populations = json.loads(graph.metadata["sddpm"])["populations"]
    predictor = LavaNoisePredictor(graph, session, reference=ModelReference(model, populations),
                                   chip_energy=DeployedEnergy())
    diffusion = GaussianDiffusion(config.diffusion_steps)
    images = sample(predictor, diffusion, (2, 1, 8, 8), sampler="ddim", steps=3, seed=0,
                    progress=False)
    torch_images = sample(lambda x, t: model(x.double(), t).float(), diffusion, (2, 1, 8, 8),
                          sampler="ddim", steps=3, seed=0, progress=False)
    assert len(predictor.comparisons) == 3
    for step in predictor.comparisons:
        assert step.worst_agreement >= 0.999, step
        assert sum(step.mismatches.values()) == 0 < sum(step.reference_spikes.values())
        assert step.eps_rel_error < 1e-3, step
        assert len(step.spike_agreement) == len(session.net.populations)
        # spike counts read from Lava, priced by the energy model, against the torch side
        assert step.energy_lava_mj > 0
        assert abs(step.energy_lava_mj / step.energy_reference_mj - 1) < 0.01
    torch.testing.assert_close(images, torch_images, atol=1e-4, rtol=0)


@pytest.mark.slow  # compiles and runs a multi-process Lava network
def test_deployed_profile_counts_the_chip_network(tiny_lava):
    from sddpm.export.latency import balance
    from sddpm.hardware.deployed import deployed_profile
    from sddpm.hardware.energy import energy_report
    from sddpm.hardware.hardware_costs import load_hardware_costs

    config, model, graph, session = tiny_lava
    host = HostSide(graph)
    x = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    feeds = host.inputs(x, torch.tensor([100]))
    _, spikes = NirExecutor(graph).run(feeds, config.timesteps)
    profile = deployed_profile(graph, {k: v.transpose(0, 1) for k, v in spikes.items()}, 100)
    instances = {(c, w) for (c, _), w in balance(graph).waits.items()}
    assert len(profile.layers) == len(instances) and all(l.binary_input for l in profile.layers)
    paper = energy_report(profile, load_hardware_costs("45nm-fp32"), "paper")
    assert paper.mac_mj == 0 and paper.ac_mj > 0  # every chip layer reads spikes
    assert profile.exact_events.sum() > 0 and profile.synaptic_ops().sum() > 0


def _busy_network(T, scale):
    """tiny with every threshold scaled down: every population fires often."""
    from sddpm.neurons import MultiStepIF

    config = get_preset("tiny").with_timesteps(T)
    torch.manual_seed(0)
    model = build_model(config, "snn").double().eval()
    for m in model.modules():
        if isinstance(m, MultiStepIF):
            m.threshold *= scale
    return config, export_nir(model)


@pytest.mark.slow  # compiles and runs a multi-process Lava network
@pytest.mark.parametrize("T, batches", [(4, [1, 3, 2]), (1, [2, 1])])
def test_chunked_runs_and_consecutive_batches_stay_exact(T, batches):
    config, graph = _busy_network(T, 0.1)
    host = HostSide(graph)
    session = LavaSession(LavaNetwork(graph, T, buffer_steps=3, tap_spikes=True))
    try:
        for k, K in enumerate(batches):
            x = torch.randn(K, 1, 8, 8, generator=torch.Generator().manual_seed(k),
                            dtype=torch.float64)
            feeds = host.inputs(x, torch.arange(K) * 300 + 10)
            outputs, spikes = NirExecutor(graph).run(feeds, T)
            stream = session.forward([{n: v[b].numpy() for n, v in feeds.items()}
                                      for b in range(K)])
            np.testing.assert_allclose(stream, outputs["stream"].transpose(0, 1).numpy(),
                                       atol=1e-12)
            silent = 0
            for name, s in session.spikes.items():
                assert np.array_equal(s, spikes[name].transpose(0, 1).numpy()), (K, name)
                silent += s.sum() == 0
            assert silent == 0  # every population fires: no path goes unchecked
    finally:
        session.stop()


@pytest.mark.slow  # compiles and runs a multi-process Lava network
def test_a_bad_feed_is_refused_before_anything_is_sent(tiny_lava):
    from sddpm.errors import SddpmError

    config, model, graph, session = tiny_lava
    feeds = HostSide(graph).inputs(torch.zeros(1, 1, 8, 8, dtype=torch.float64),
                                   torch.tensor([5]))
    good = {k: v[0].numpy() for k, v in feeds.items()}
    bad = dict(good, input=good["input"][:, :4])
    with pytest.raises(SddpmError, match="input input has shape"):
        session.forward([good, bad])
    assert not session.broken
    with pytest.raises(SddpmError, match="no images"):
        session.forward([])
