"""An official SDDPM checkpoint, converted, through NIR and fixed point with its own rule.

Its neurons fire on ``v >= threshold``; NIR's IF (and Lava's LIF) fire on ``v >``. The
tie variant of the fixture puts 8,192 membranes exactly on the threshold, so a graph
that lost the rule would miss spikes there.
"""

import json

import numpy as np
import pytest

from sddpm.export.from_checkpoint import export_to_nir
from sddpm.export.nir_file import firing_rule, model_threshold, read_nir
from sddpm.export.quantize import (
    ACTIVATION_SHIFT,
    quantize_graph,
    read_fixed_point,
    summed_bias,
    write_fixed_point,
)
from sddpm.export.torch_to_nir import export_nir
from sddpm.sampling import model_from_checkpoint
from sddpm.simulations.fixed_emulator import FixedPointEmulator, FixedPointNoisePredictor
from tests.export.test_torch_to_nir import check_export
from tests.reference_fixture import converted_checkpoint, fixture_input, make_tie_variant


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    return converted_checkpoint(tmp_path_factory.mktemp("ref") / "converted.pt")


def _model(path, tie=False):
    model, _ = model_from_checkpoint(path)
    if tie:
        make_tie_variant(model.state_dict())
    return model.double()


@pytest.mark.parametrize("tie", [False, True])
def test_the_graph_fires_as_the_official_model(converted, tmp_path, tie):
    x, t = fixture_input()
    graph, rel = check_export(_model(converted, tie), tmp_path, x, t)
    info = json.loads(graph.metadata["sddpm"])
    assert info["fires_on"] == ">=" and "largest float64 below theta" in info["neuron_convention"]
    assert firing_rule(graph) == ">="
    node = graph.nodes["down.0.neuron1"]
    assert node.v_threshold.dtype == np.float64
    assert np.all(node.v_threshold == np.nextafter(1.0, 0.0))
    assert np.all(model_threshold(graph, "down.0.neuron1") == 1.0)
    assert rel < 1e-12


def test_a_float32_graph_keeps_the_rule(converted, tmp_path):
    summary = export_to_nir(converted, output=tmp_path / "m.nir", dtype="float32")
    graph = read_nir(summary["output"])
    weights = [n.weight.dtype for n in graph.nodes.values() if hasattr(n, "weight")]
    assert set(weights) == {np.dtype(np.float32)}
    thresholds = {n.v_threshold.dtype for n in graph.nodes.values() if hasattr(n, "v_threshold")}
    assert thresholds == {np.dtype(np.float64)}  # float32 would round back onto 1.0


def test_a_strict_rule_graph_would_miss_the_ties(converted):
    """Without the nudged threshold the tie layer loses every other spike: the test above
    would see it."""
    from sddpm.export.executor import predict_noise

    x, t = fixture_input()
    graph = export_nir(_model(converted, tie=True))
    for node in graph.nodes.values():
        if hasattr(node, "v_threshold"):
            node.v_threshold = np.nextafter(node.v_threshold, np.inf)  # back to 1.0, strict
    _, spikes = predict_noise(graph, x, t)
    fired = int(spikes["down.0.neuron1"][:, :, 0].sum())
    assert fired == 2 * 2 * 32 * 32  # channel 0 at the 2nd and 4th step only, not all 4


def test_fixed_point_keeps_greater_or_equal_on_integers(converted, tmp_path):
    graph = export_nir(_model(converted))
    fixed = quantize_graph(graph)
    assert fixed.fires_on == ">="
    for pop, vth in fixed.vth.items():
        # on the a_in grid: v moves in steps of 64, so Lava's v > (vth - 1) << 6 is v >= vth << 6
        assert np.all(fixed.effective_bias(pop) % (1 << ACTIVATION_SHIFT) == 0), pop
        # and as near the float bias as that grid allows (half a grid, plus half a step
        # where the exponent outgrows the grid)
        exact = summed_bias(graph, pop) * fixed.scale[pop] * (1 << ACTIVATION_SHIFT)
        step = 2.0 ** fixed.bias_exp[pop]
        assert np.all(np.abs(fixed.effective_bias(pop) - exact)
                      <= 32 + np.where(step > 64, step / 2, 0) + 1e-9), pop
        assert fixed.lava_vth(pop) == vth - 1
    back = read_fixed_point(write_fixed_point(fixed, tmp_path / "f.h5"), graph)
    assert back.fires_on == ">=" and back.vth == fixed.vth


def test_in_fixed_point_the_two_rules_differ_constantly(converted):
    """On integers a membrane lands on the threshold all the time: the rule matters even
    without the tie variant."""
    graph = export_nir(_model(converted))
    fixed = quantize_graph(graph)
    x, t = fixture_input()
    inputs = FixedPointNoisePredictor(graph, fixed).integer_inputs(x, t)
    _, ge = FixedPointEmulator(graph, fixed).run(inputs, 4)
    fixed.fires_on = ">"
    _, gt = FixedPointEmulator(graph, fixed).run(inputs, 4)
    first = "encoder.neuron"  # same input under both rules: the difference is the ties
    assert ge[first].sum() > gt[first].sum()
    differing = sum(int((ge[k] != gt[k]).sum()) for k in ge)
    assert differing > 1000
