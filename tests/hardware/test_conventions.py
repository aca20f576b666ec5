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
    assert price_neurobench(count, fp32).per_forward_mj == pytest.approx(
        (592 * 4.6 + 57 * 0.9) * 1e-9, rel=1e-12)


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


def test_a_cost_file_without_sram_figures_is_refused_for_memory(measured):
    from sddpm.errors import SddpmError

    with pytest.raises(SddpmError, match="no SRAM figures"):
        price_memory(measured[0], load_hardware_costs("45nm-fp32"))
