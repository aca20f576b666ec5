"""Every convention's total of a three-layer network, counted by hand.

    x (1x4x4 image of 0.5, repeated over T = 2)
      -> conv_img (3x3, padding 1, 1 -> 2)            analog stream a, all > 0
    current (hand-placed) -> neuron (IF) -> s (3 spikes)
      -> conv_spk (3x3, padding 1, 2 -> 3)            reads spikes
    a -> shortcut (1x1, 2 -> 3)                        reads the analog stream
    output = conv_spk(s) + shortcut(a)

The IF population gets a current of 2 where a spike is wanted and 0 elsewhere: with
threshold 1 and reset to 0 it fires exactly there. Spikes: t = 0 channel 0 at the
corner (0, 0) and channel 1 at (1, 2) (inside); t = 1 channel 0 at (0, 2) (top edge).
All weights are non-zero (NeuroBench counts non-zero weights only).
"""

import pytest
import torch
from torch import nn

from sddpm.hardware.conventions import price_counting, price_memory, price_neurobench
from sddpm.hardware.hardware_costs import load_hardware_costs
from sddpm.hardware.neurobench_count import NeuroBenchCounter
from sddpm.hardware.profiler import ActivityProfiler
from sddpm.neurons import MultiStepIF

T = 2


class HandNetwork(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv_img = nn.Conv2d(1, 2, 3, padding=1)
        self.neuron = MultiStepIF(timesteps=T, backend="snntorch")
        self.conv_spk = nn.Conv2d(2, 3, 3, padding=1)
        self.shortcut = nn.Conv2d(2, 3, 1)
        for conv in (self.conv_img, self.conv_spk, self.shortcut):
            nn.init.constant_(conv.weight, 0.5)
            nn.init.constant_(conv.bias, 0.25)
        current = torch.zeros(T, 2, 4, 4)
        current[0, 0, 0, 0] = current[0, 1, 1, 2] = current[1, 0, 0, 2] = 2.0
        self.register_buffer("current", current)

    def forward(self, x, t):
        a = self.conv_img(x.repeat(T, 1, 1, 1))  # [T*B, 2, 4, 4], B = 1
        s = self.neuron(self.current)
        return self.conv_spk(s) + self.shortcut(a)


@pytest.fixture(scope="module")
def measured():
    model = HandNetwork().eval()
    x, t = torch.full((1, 1, 4, 4), 0.5), torch.tensor([3])
    with torch.no_grad(), ActivityProfiler(model, T) as profiler, \
            NeuroBenchCounter(model) as neurobench:
        model(x, t)
    return profiler.profile({"arch": "snn"}), neurobench.count()


def test_the_spikes_are_the_hand_placed_ones(measured):
    profile, _ = measured
    spk = [l.name for l in profile.layers].index("conv_spk")
    assert profile.input_rate[0, spk].tolist() == [2 / 32, 1 / 32]
    assert profile.population_rate[0, 0].tolist() == [2 / 32, 1 / 32]


def test_paper_and_strict_totals(measured):
    profile, _ = measured
    fp32 = load_hardware_costs("45nm-fp32")
    # conv_img, the first conv, computed once (its input repeats over T): dense MACs
    #   C_out H W x C_in K = (2 * 16) * (1 * 9) = 288, at 4.6 pJ = 1324.8 pJ
    # conv_spk: dense MACs per timestep (3 * 16) * (2 * 9) = 864; SOPs = sum_t fr_t * 864
    #   = (2/32 + 1/32) * 864 = 81 ACs at 0.9 pJ = 72.9 pJ
    # shortcut: dense (3 * 16) * 2 = 96 per timestep, T = 2: 192; its input a is
    #   non-zero everywhere (fr = 1), so SOPs = 192
    #   paper: 192 ACs at 0.9 = 172.8 pJ; strict: analog input, 192 MACs at 4.6 = 883.2
    paper = price_counting(profile, fp32, "paper")
    strict = price_counting(profile, fp32, "strict")
    assert paper.rows == pytest.approx({"conv_img": 1324.8e-9, "conv_spk": 72.9e-9,
                                        "shortcut": 172.8e-9}, rel=1e-12)
    assert strict.components == pytest.approx({"MAC": (1324.8 + 883.2) * 1e-9,
                                               "AC": 72.9e-9, "neuron updates": 0.0},
                                              rel=1e-12)
    assert paper.counts["shortcut"] == {"op": "AC", "operations": 192}
    assert paper.counts["conv_spk"] == {"op": "AC", "operations": 81}
    assert paper.counts["conv_img"] == {"op": "MAC", "operations": 288}
    assert strict.counts["shortcut"] == {"op": "MAC", "operations": 192}
    # on Loihi 'strict' adds the neuron updates as a row: 32 neurons x 2 timesteps,
    # 3 firing (81 pJ), 61 not (52 pJ)
    loihi = price_counting(profile, load_hardware_costs("loihi1"), "strict")
    assert loihi.rows["neuron updates"] == pytest.approx((3 * 81 + 61 * 52) * 1e-9, rel=1e-12)
    assert paper.per_forward_mj == pytest.approx((1324.8 + 72.9 + 172.8) * 1e-9, rel=1e-12)
    assert strict.per_forward_mj == pytest.approx((1324.8 + 72.9 + 883.2) * 1e-9, rel=1e-12)


def test_neurobench_total_is_its_effective_count(measured):
    profile, count = measured
    fp32 = load_hardware_costs("45nm-fp32")
    ops = dict(zip(count.layers, count.effective[0]))
    kind = dict(zip(count.layers, count.kind))
    # conv_img: NeuroBench sees the T = 2 copies of the image; non-zero inputs times the
    #   weights they meet, no padding taps: per axis 3 * 4 - 2 = 10 taps, 10 * 10 = 100
    #   per input channel, x C_out 2 = 200 per copy, x T = 400 MACs
    assert (kind["conv_img"], ops["conv_img"]) == ("MAC", 400)
    # conv_spk: the corner spike meets 2 x 2 taps, the inner 3 x 3, the edge 2 x 3:
    #   (4 + 9 + 6) x C_out 3 = 57 ACs (= our exact event count)
    assert (kind["conv_spk"], ops["conv_spk"]) == ("AC", 57)
    spk = [l.name for l in profile.layers].index("conv_spk")
    assert profile.exact_events[0, spk] == 57
    # shortcut: 2 x 16 non-zero inputs x 1 tap x C_out 3 = 96 per timestep, x T = 192 MACs
    assert (kind["shortcut"], ops["shortcut"]) == ("MAC", 192)
    # priced: (400 + 192) MACs at 4.6 pJ + 57 ACs at 0.9 pJ
    priced = price_neurobench(count, fp32)
    assert priced.per_forward_mj == pytest.approx((592 * 4.6 + 57 * 0.9) * 1e-9, rel=1e-12)
    assert priced.rows == pytest.approx({"conv_img": 400 * 4.6e-9, "conv_spk": 57 * 0.9e-9,
                                         "shortcut": 192 * 4.6e-9}, rel=1e-12)
    assert priced.components == pytest.approx({"MAC": 592 * 4.6e-9, "AC": 57 * 0.9e-9},
                                              rel=1e-12)
    # NeuroBench's dense count: every input and weight taken as non-zero, no padding
    # taps: conv_img as counted, conv_spk 2 x 100 taps x 3 x T = 1200, shortcut 192
    assert {r: c["dense"] for r, c in priced.counts.items()} == {
        "conv_img": 400, "conv_spk": 1200, "shortcut": 192}


def test_each_convention_prices_on_its_documented_hardware():
    from sddpm.hardware.conventions import CONVENTIONS

    assert {n: c.hardware for n, c in CONVENTIONS.items()} == {
        "paper": "45nm-fp32", "strict": "45nm-fp32", "neurobench": "45nm-fp32",
        "memory": "45nm-int32-sram", "deployed": "loihi1"}
    for convention in CONVENTIONS.values():
        costs = load_hardware_costs(convention.hardware)
        assert convention.rule and convention.source and convention.ann
        assert (costs.memory is not None) == (convention.name == "memory")


def sram(words):
    """One access to an SRAM of ``words`` 32-bit words: 1.09e-5 pJ/bit * 32 bits + 13.2."""
    return 1.09e-5 * 32 * words + 13.2


def test_memory_total_counted_by_hand(measured):
    profile, _ = measured
    # 45nm-int32-sram: MAC 3.2 pJ (mul 3.1 + add 0.1), add 0.1 pJ
    # conv_img, formal, once: C_in 1, C_out 2, K 9, N_in 16, N_out 32, 18 weights
    #   MACs 1 * 9 * 32 = 288; adds: bias 32 + addressing N_in + N_out + C_out K = 66
    #   reads: 288 inputs from a 16-word map, 288 weights from 18 words, 32 biases from 2;
    #   writes: 32 outputs into a 32-word map
    conv_img = (288 * 3.2 + 98 * 0.1 + 288 * sram(16) + 288 * sram(18) + 32 * sram(2)
                + 32 * sram(32))
    # conv_spk, spiking: theta_in 3, C_out 3, K 9, stride 1 (ceil(3/1)^2 = 9), N_in 32,
    #   N_out 48, 54 weights, T 2
    #   multiply-adds: addressing 2 theta = 6; adds: 3 * 9 * 3 = 81 synaptic + T N_out 96
    #   + addressing theta K = 27
    #   weight reads theta C_out K = 81 (54 words); membrane reads and writes
    #   2 (81 + 96) = 354 (48 words); input reads 3 (32 words); bias reads T N_out 96 (3)
    conv_spk = (6 * 3.2 + 204 * 0.1 + 81 * sram(54) + 354 * sram(48) + 3 * sram(32)
                + 96 * sram(3))
    # shortcut, formal, once per timestep (x 2): C_in 2, C_out 3, K 1, N_in 32, N_out 48
    #   per application MACs 96, adds 48 + (32 + 48 + 3) = 131; reads 96 inputs (32 words),
    #   96 weights (6 words), 48 biases (3 words); 48 output writes (48 words)
    shortcut = 2 * (96 * 3.2 + 131 * 0.1 + 96 * sram(32) + 96 * sram(6) + 48 * sram(3)
                    + 48 * sram(48))
    # the IF population: 3 output spikes, 3 reset additions and 3 writes (32 words)
    neuron = 3 * 0.1 + 3 * sram(32)
    priced = price_memory(profile, load_hardware_costs("45nm-int32-sram"))
    rows = priced.rows
    assert rows["conv_img"] == pytest.approx(conv_img * 1e-9, rel=1e-12)
    assert rows["conv_spk"] == pytest.approx(conv_spk * 1e-9, rel=1e-12)
    assert rows["shortcut"] == pytest.approx(shortcut * 1e-9, rel=1e-12)
    assert rows["neuron"] == pytest.approx(neuron * 1e-9, rel=1e-12)
    assert priced.per_forward_mj == pytest.approx(
        (conv_img + conv_spk + shortcut + neuron) * 1e-9, rel=1e-12)
    # only conv_spk has membrane traffic; only the formal layers pay a MAC per tap
    assert priced.components["membrane"] == pytest.approx(354 * sram(48) * 1e-9, rel=1e-12)
    assert priced.components["weights"] == pytest.approx(
        (288 * sram(18) + 81 * sram(54) + 2 * 96 * sram(6)) * 1e-9, rel=1e-12)
    assert {r: c["kind"] for r, c in priced.counts.items()} == {
        "conv_img": "formal", "conv_spk": "spiking", "shortcut": "formal",
        "neuron": "population"}


def test_memory_of_a_linear_layer_and_a_strided_conv_without_bias():
    """Shapes the hand network lacks, in a profile written by hand."""
    from dataclasses import replace

    import numpy as np

    from sddpm.hardware.spike_profile import SpikeProfile, SynapticLayer

    linear = SynapticLayer("temb", "linear", (3, 4), (4,), (3,), 12, per_timestep=False,
                           binary_input=False)
    # 3x3, stride 2, padding 1 on 5x5 -> 3x3 (5 // 3 would wrongly give stride 1)
    strided = SynapticLayer("down", "conv2d", (2, 1, 3, 3), (1, 5, 5), (2, 3, 3), 2 * 9 * 9,
                            per_timestep=True, binary_input=True, bias=False, stride=(2, 2))
    profile = SpikeProfile(layers=[linear, strided], populations=[], timesteps=2,
                           diffusion_t=np.array([5]),
                           input_rate=np.array([[[0.9, 0.9], [4 / 25, 1 / 25]]]),
                           exact_events=np.zeros((1, 2)), population_rate=np.zeros((1, 0, 2)),
                           meta={"arch": "snn"})
    rows = price_memory(profile, load_hardware_costs("45nm-int32-sram")).rows
    # Linear, formal, once: N_in 4, N_out 3, 12 weights: 12 MACs; adds: bias 3 +
    #   addressing N_in N_out 12; reads: 4 inputs once (4 words), 12 weights (12 words),
    #   3 biases (3 words); 3 output writes (3 words)
    assert rows["temb"] == pytest.approx(
        (12 * 3.2 + 15 * 0.1 + 4 * sram(4) + 12 * sram(12) + 3 * sram(3) + 3 * sram(3)) * 1e-9,
        rel=1e-12)
    # strided spiking conv: theta_in = (4 + 1) spikes; reach ceil(3/2)^2 = 4; C_out 2,
    #   K 9, N_in 25, N_out 18, 18 weights, T 2, no bias
    #   multiply-adds 2 theta = 10; adds 5 * 4 * 2 = 40 + T N_out 36 + theta K 45 = 121
    #   weight reads 5 * 2 * 9 = 90 (18 words); membrane 2 (90 + 36) = 252 (18 words);
    #   input reads 5 (25 words); no bias reads
    # the same conv from a profile written before strides were kept: ceil(5 / 3) = 2
    legacy = SpikeProfile(layers=[linear, replace(strided, stride=())],
                          populations=[], timesteps=2, diffusion_t=profile.diffusion_t,
                          input_rate=profile.input_rate, exact_events=profile.exact_events,
                          population_rate=profile.population_rate, meta={"arch": "snn"})
    assert price_memory(legacy, load_hardware_costs("45nm-int32-sram")).rows["down"] == \
        pytest.approx(rows["down"], rel=1e-12)
    # a formal conv without bias: the strided conv read as analog (an ANN's layer), per
    #   application MACs 1 * 9 * 18 = 162; adds: addressing 25 + 18 + 2 * 9 = 61, no bias;
    #   reads 162 inputs (25 words), 162 weights (18 words); 18 writes (18 words)
    ann = SpikeProfile(layers=[replace(strided, binary_input=False, per_timestep=False)],
                       populations=[], timesteps=1, diffusion_t=profile.diffusion_t,
                       input_rate=np.ones((1, 1, 1)), exact_events=np.zeros((1, 1)),
                       population_rate=np.zeros((1, 0, 1)), meta={"arch": "ann"})
    assert price_memory(ann, load_hardware_costs("45nm-int32-sram")).rows["down"] == \
        pytest.approx((162 * 3.2 + 61 * 0.1 + 162 * sram(25) + 162 * sram(18)
                       + 18 * sram(18)) * 1e-9, rel=1e-12)
    assert rows["down"] == pytest.approx(
        (10 * 3.2 + 121 * 0.1 + 90 * sram(18) + 252 * sram(18) + 5 * sram(25)) * 1e-9,
        rel=1e-12)


def test_a_cost_file_without_sram_figures_is_refused_for_memory(measured):
    from sddpm.errors import SddpmError

    with pytest.raises(SddpmError, match=r"^hardware costs 45nm-fp32 have no SRAM figures; the "
                       r"memory convention needs a cost file with a 'memory' entry, such as "
                       r"45nm-int32-sram$"):
        price_memory(measured[0], load_hardware_costs("45nm-fp32"))
