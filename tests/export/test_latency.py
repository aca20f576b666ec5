"""The Lava schedule: every path into a node takes the same number of steps."""

import dataclasses

import nir
import pytest
import torch

from sddpm.export.latency import balance
from sddpm.export.nir_file import Upsample2d
from sddpm.export.torch_to_nir import export_nir
from sddpm.models import build_model
from sddpm.presets import get_preset


@pytest.fixture(scope="module", params=["tiny", "digits-flat", "fmnist-small"])
def graph(request):
    torch.manual_seed(0)
    return export_nir(build_model(get_preset(request.param), "snn"))


def _source(graph, conv):
    (source,) = [a for a, b in graph.edges if b == conv]
    return source


def test_every_target_hears_all_its_edges_at_once_and_waits_no_longer(graph):
    # Lava's timing, not balance()'s: a spike at the source's step s crosses the conv at
    # s + 1 and leaves its delay line `wait` steps later. Balanced: every edge into a
    # target lands on one step. Minimal: some edge into each target does not wait.
    schedule = balance(graph)
    landing = {}
    for (conv, target), wait in schedule.waits.items():
        assert wait >= 0
        landing.setdefault(target, []).append((schedule.arrival[_source(graph, conv)] + 1
                                                + wait, wait))
    for target, hits in landing.items():
        assert {step for step, _ in hits} == {schedule.arrival[target]}, target
        assert min(wait for _, wait in hits) == 0, target
    for name, node in graph.nodes.items():
        if isinstance(node, Upsample2d):
            assert schedule.arrival[name] == schedule.arrival[_source(graph, name)] + 1
    assert set(landing) == {n for n, node in graph.nodes.items()
                            if isinstance(node, (nir.IF, nir.Output))} - {"encoder.neuron"}


def test_some_edges_need_delay_lines_and_inputs_are_timed_by_the_host(graph):
    schedule = balance(graph)
    assert max(schedule.waits.values()) > 0  # residual paths are shorter than block paths
    for name in graph.inputs:
        (target,) = [b for a, b in graph.edges if a == name]
        assert schedule.input_steps[name] == schedule.arrival[target]
    assert schedule.latency() == schedule.output_arrival - 1
    assert schedule.steps_per_forward(4) == schedule.output_arrival + 3


# The minimal latency, by hand. Every Lava connection costs one step and nothing else
# does, so a node's earliest step is one more than its latest source's, and the schedule
# is the longest path. The longest path runs through the two populations of every block
# on the way down and up, not through the shorter residual and skip paths:
#   encoder.neuron at step 1, then one step per population:
#   per level and res block down 2, one per downsampling, 4 in the middle,
#   per level (num_res_blocks + 1) up blocks of 2, one per upsampling block;
#   each upsampling Sparse adds a step, and the Output reads the last stream one step on.
# So latency = output arrival - 1 = P + U with P the populations on that path and U the
# upsamplings (levels L, res blocks R): P = 1 + 2LR + (L-1) + 4 + 2L(R+1) + (L-1).
#   tiny (L=2, R=1):          P = 1 + 4 + 1 + 4 + 8 + 1 = 19, U = 1 -> 20
#   fmnist-small (L=3, R=1):  P = 1 + 6 + 2 + 4 + 12 + 2 = 27, U = 2 -> 29
#   digits-flat (L=1, R=1):   P = 1 + 2 + 0 + 4 + 4 + 0 = 11, U = 0 -> 11
#   cifar10 layout (L=4, R=2): P = 1 + 16 + 3 + 4 + 24 + 3 = 51, U = 3 -> 54
MINIMAL_LATENCY = {"tiny": 20, "fmnist-small": 29, "digits-flat": 11}


@pytest.mark.parametrize("preset, latency", MINIMAL_LATENCY.items())
def test_latency_is_the_hand_counted_minimum(preset, latency):
    torch.manual_seed(0)
    schedule = balance(export_nir(build_model(get_preset(preset), "snn")))
    assert schedule.latency() == latency
    assert schedule.steps_per_forward(4) == latency + 4


def test_the_paper_layout_needs_54_steps():
    # cifar10's levels and res blocks at a width that exports in a second
    config = dataclasses.replace(get_preset("cifar10"), name="cifar10-narrow", ch=4, image_size=16,
                                 image_channels=1)
    torch.manual_seed(0)
    assert balance(export_nir(build_model(config, "snn"))).latency() == 54


def test_tiny_schedule_node_by_node():
    """Arrival steps of tiny's populations, counted along the network by hand."""
    torch.manual_seed(0)
    schedule = balance(export_nir(build_model(get_preset("tiny"), "snn")))
    by_hand = {
        "encoder.neuron": 1, "down.0.neuron1": 2, "down.0.neuron2": 3, "down.1.neuron": 4,
        "down.2.neuron1": 5, "down.2.neuron2": 6, "middle.0.neuron1": 7,
        "middle.0.neuron2": 8, "middle.1.neuron1": 9, "middle.1.neuron2": 10,
        # a skip part of an up block integrates as soon as its own stream is ready
        "up.0.neuron1:0": 11, "up.0.neuron1:1": 7, "up.0.neuron2": 12,
        "up.1.neuron1:0": 13, "up.1.neuron1:1": 5, "up.1.neuron2": 14,
        "up.2.neuron": 15, "up.2.upsample": 16,
        "up.3.neuron1:0": 17, "up.3.neuron1:1": 4, "up.3.neuron2": 18,
        "up.4.neuron1:0": 19, "up.4.neuron1:1": 2, "up.4.neuron2": 20, "stream": 21,
    }
    assert schedule.arrival == by_hand
    # the skip part's conv waits for the stream part: 12 - (7 + 1), 20 - (2 + 1)
    assert schedule.waits[("up.0.conv1:1", "up.0.neuron2")] == 4
    assert schedule.waits[("up.4.conv1:1", "up.4.neuron2")] == 17
    # the encoder's spikes reach the output through the outer skip's shortcut
    assert schedule.waits[("up.4.shortcut:1@encoder.conv2", "stream")] == 21 - 2
    # each block's time embedding is injected when its second population integrates
    assert schedule.input_steps["temb:up.4"] == 20 and schedule.input_steps["input"] == 1
