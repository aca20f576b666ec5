"""The deployed network's synaptic events, counted by hand on a graph built by hand.

    input -> a (IF, 2x4x4) -> c3 (3x3 conv, padding 1, 2 -> 3) -> b (IF, 3x4x4)
          -> u (nearest x2) -> c1 (1x1 conv, 3 -> 2) -> stream (Output, 2x8x8)

One image, T = 3 spiking timesteps (the last one silent), five spikes placed by hand.
"""

import nir
import numpy as np
import pytest

from sddpm.export.nir_file import Upsample2d
from sddpm.hardware.deployed import DeployedEnergy, deployed_profile
from sddpm.hardware.energy import energy_report
from sddpm.hardware.hardware_costs import load_hardware_costs


def _if(shape):
    return nir.IF(r=np.ones(shape), v_threshold=np.ones(shape), v_reset=np.zeros(shape))


def _conv(hw, c_out, c_in, k, padding):
    return nir.Conv2d(input_shape=hw, weight=np.ones((c_out, c_in, k, k)), stride=1,
                      padding=padding, dilation=1, groups=1, bias=np.zeros(c_out))


@pytest.fixture(scope="module")
def graph():
    nodes = {
        "input": nir.Input(input_type={"input": np.array([2, 4, 4])}),
        "a": _if((2, 4, 4)),
        "c3": _conv((4, 4), 3, 2, 3, padding=1),
        "b": _if((3, 4, 4)),
        "u": Upsample2d(input_shape=(3, 4, 4), scale_factor=(2, 2)),
        "c1": _conv((8, 8), 2, 3, 1, padding=0),
        "stream": nir.Output(output_type={"output": np.array([2, 8, 8])}),
    }
    edges = [("input", "a"), ("a", "c3"), ("c3", "b"), ("b", "u"), ("u", "c1"),
             ("c1", "stream")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


@pytest.fixture(scope="module")
def spikes():
    a = np.zeros((1, 3, 2, 4, 4))  # [B, T, C, H, W]
    a[0, 0, 0, 0, 0] = 1  # a corner: 2 x 2 of the 3x3 taps land inside the 4x4 output
    a[0, 0, 1, 1, 2] = 1  # inside: all 3 x 3 taps
    a[0, 1, 0, 0, 2] = 1  # the top edge: 2 x 3 taps
    b = np.zeros((1, 3, 3, 4, 4))
    b[0, 0, 2, 3, 3] = 1  # each becomes 2 x 2 spikes after upsampling
    b[0, 1, 0, 1, 1] = 1
    return {"a": a, "b": b}


def test_events_per_map_are_the_hand_count(graph, spikes):
    profile = deployed_profile(graph, spikes, diffusion_t=7)
    layers = {l.name: i for i, l in enumerate(profile.layers)}
    assert set(layers) == {"c3+0", "c1+0"}  # one Lava Conv each, no delay lines here
    events = profile.exact_events[0]
    # c3: (4 + 9 + 6) taps, each to C_out = 3 output channels
    assert events[layers["c3+0"]] == 57
    # c1: 2 spikes x 4 upsampled copies x 1 tap x C_out = 2
    assert events[layers["c1+0"]] == 16
    assert list(profile.diffusion_t) == [7] and profile.timesteps == 3
    # a chip profile: priced without a host-side first conv (sddpm.hardware.energy)
    assert profile.meta["part"] == "chip" and profile.meta["arch"] == "snn"


def test_dense_macs_and_rates_of_the_maps(graph, spikes):
    profile = deployed_profile(graph, spikes, diffusion_t=7)
    by_name = {l.name: (i, l) for i, l in enumerate(profile.layers)}
    i3, c3 = by_name["c3+0"]
    i1, c1 = by_name["c1+0"]
    assert c3.dense_macs == 4 * 4 * 3 * 2 * 9 and c3.output_shape == (3, 4, 4)
    assert c1.dense_macs == 8 * 8 * 2 * 3 and c1.input_shape == (3, 8, 8)  # upsampled
    assert c3.binary_input and c1.binary_input and c3.per_timestep
    assert c3.kind == c1.kind == "conv2d" and c3.weight_shape == (3, 2, 3, 3)
    # fraction of non-zero inputs per timestep: 2, 1, 0 of 32; 4, 4, 0 of 192
    assert profile.input_rate[0, i3].tolist() == [2 / 32, 1 / 32, 0]
    assert profile.input_rate[0, i1].tolist() == [4 / 192, 4 / 192, 0]
    pops = {p.name: (k, p.neurons) for k, p in enumerate(profile.populations)}
    assert pops["a"][1] == 32 and pops["b"][1] == 48
    assert profile.population_rate[0, pops["a"][0]].tolist() == [2 / 32, 1 / 32, 0]


def test_the_chip_energy_of_the_hand_counted_events(graph, spikes):
    # SOPs = sum_t rate_t * dense MACs: c3 (2/32 + 1/32) 864 = 81, c1 (8/192) 384 = 16;
    # on the chip every map reads spikes and the first conv is the host's: all ACs
    assert DeployedEnergy("45nm-fp32", "paper")(graph, spikes, 7) == pytest.approx(
        97 * 0.9 * 1e-9, rel=1e-12)
    # Loihi under 'strict' adds neuron updates: 80 neurons x 3 timesteps, 5 of them
    # firing (3 in a, 2 in b), 81 pJ active, 52 pJ inactive, 23.6 pJ per synaptic op
    report = energy_report(deployed_profile(graph, spikes, 7), load_hardware_costs("loihi1"),
                           "strict")
    assert report.per_forward_mj == pytest.approx((97 * 23.6 + 5 * 81 + 235 * 52) * 1e-9,
                                                  rel=1e-12)
    assert report.mac_mj == 0


def test_simulate_prices_on_45nm_fp32_under_the_papers_convention_by_default(graph, spikes):
    default, explicit = DeployedEnergy(), DeployedEnergy("45nm-fp32", "paper")
    assert default(graph, spikes, 7) == explicit(graph, spikes, 7)
    # what simulate.json records as "energy_hardware"
    assert default.description == "45nm-fp32, 'paper' convention, chip network only"
    assert DeployedEnergy("loihi1", "strict")(graph, spikes, 7) > default(graph, spikes, 7)


def test_the_deployed_convention_prices_exact_events_neurons_and_host(graph, spikes):
    from sddpm.hardware.conventions import price_deployed
    from sddpm.hardware.spike_profile import SpikeProfile, SynapticLayer

    # the torch side of the same forward pass: one host layer (the encoding conv, run
    # once: 288 dense MACs) and one chip layer, which the host does not price
    host = SynapticLayer("encoder.conv1", "conv2d", (2, 1, 3, 3), (1, 4, 4), (2, 4, 4), 288,
                         per_timestep=False, binary_input=False)
    chip_side = SynapticLayer("down.0.conv1", "conv2d", (3, 2, 3, 3), (2, 4, 4), (3, 4, 4),
                              864, per_timestep=True, binary_input=True)
    torch_side = SpikeProfile(layers=[host, chip_side], populations=[], timesteps=3,
                              diffusion_t=np.array([7]), input_rate=np.full((1, 2, 3), 0.5),
                              exact_events=np.zeros((1, 2)),
                              population_rate=np.zeros((1, 0, 3)))
    priced = price_deployed(torch_side, deployed_profile(graph, spikes, 7),
                            load_hardware_costs("loihi1"), load_hardware_costs("45nm-fp32"),
                            lambda name: name.startswith("encoder.conv1"))
    # exact events, not fr*T*MACs: c3 57 + c1 16 = 73 at 23.6 pJ; neuron updates: 80
    # neurons x 3 timesteps, 5 firing (81 pJ), 235 not (52 pJ); host 288 MACs at 4.6 pJ
    assert priced.components["chip synaptic events"] == pytest.approx(73 * 23.6e-9, rel=1e-12)
    assert priced.components["chip neuron updates"] == pytest.approx(
        (5 * 81 + 235 * 52) * 1e-9, rel=1e-12)
    assert priced.components["host MACs"] == pytest.approx(288 * 4.6e-9, rel=1e-12)
    assert priced.per_forward_mj == pytest.approx(
        (73 * 23.6 + 5 * 81 + 235 * 52 + 288 * 4.6) * 1e-9, rel=1e-12)
    assert priced.rows == pytest.approx({
        "encoder.conv1": 288 * 4.6e-9, "chip c3+0": 57 * 23.6e-9, "chip c1+0": 16 * 23.6e-9,
        "chip neuron updates": (5 * 81 + 235 * 52) * 1e-9}, rel=1e-12)
    assert priced.counts == {"chip c3+0": {"op": "synaptic event", "operations": 57},
                             "chip c1+0": {"op": "synaptic event", "operations": 16}}
    # an ANN is all host: both layers dense MACs, 288 + 3 x 864
    ann = price_deployed(torch_side, None, load_hardware_costs("loihi1"),
                         load_hardware_costs("45nm-fp32"), lambda name: False)
    assert ann.per_forward_mj == pytest.approx((288 + 3 * 864) * 4.6e-9, rel=1e-12)
    assert ann.rows == pytest.approx({"encoder.conv1": 288 * 4.6e-9,
                                      "down.0.conv1": 3 * 864 * 4.6e-9}, rel=1e-12)
    assert ann.components == pytest.approx({"host MACs": (288 + 3 * 864) * 4.6e-9}, rel=1e-12)
    assert ann.counts == {}
    # a chip cost file without neuron figures prices events only
    bare = price_deployed(torch_side, deployed_profile(graph, spikes, 7),
                          load_hardware_costs("truenorth"), load_hardware_costs("45nm-fp32"),
                          lambda name: name.startswith("encoder.conv1"))
    assert bare.components["chip neuron updates"] == 0
    assert bare.per_forward_mj == pytest.approx((73 * 26 + 288 * 4.6) * 1e-9, rel=1e-12)
