"""The Lava schedule: every path into a node takes the same number of steps."""

import nir
import pytest
import torch

from export.latency import balance
from export.nir_file import Upsample2d
from export.torch_to_nir import export_nir
from sddpm.models import build_model
from sddpm.presets import get_preset


@pytest.fixture(scope="module", params=["tiny", "digits-flat", "fmnist-small"])
def graph(request):
    torch.manual_seed(0)
    return export_nir(build_model(get_preset(request.param), "snn"))


def _source(graph, conv):
    (source,) = [a for a, b in graph.edges if b == conv]
    return source


def test_every_edge_arrives_at_its_targets_arrival_step(graph):
    schedule = balance(graph)
    assert schedule.waits and schedule.arrival["encoder.neuron"] == 1
    for (conv, target), wait in schedule.waits.items():
        assert wait >= 0
        source = _source(graph, conv)
        # one step for the conv, the wait in the delay line, nothing else
        assert schedule.arrival[source] + 1 + wait == schedule.arrival[target]
    for name, node in graph.nodes.items():
        if isinstance(node, Upsample2d):
            assert schedule.arrival[name] == schedule.arrival[_source(graph, name)] + 1
    convs_into = {target for (_, target) in schedule.waits}
    assert convs_into == {n for n, node in graph.nodes.items()
                          if isinstance(node, (nir.IF, nir.Output))} - {"encoder.neuron"}


def test_some_edges_need_delay_lines_and_inputs_are_timed_by_the_host(graph):
    schedule = balance(graph)
    assert max(schedule.waits.values()) > 0  # residual paths are shorter than block paths
    for name in graph.inputs:
        (target,) = [b for a, b in graph.edges if a == name]
        assert schedule.input_steps[name] == schedule.arrival[target]
    assert schedule.latency() == schedule.output_arrival - 1
    assert schedule.steps_per_forward(4) == schedule.output_arrival + 3
