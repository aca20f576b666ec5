import nir
import numpy as np
import pytest
import torch

from export.nir_file import Upsample2d, graph_info, read_nir, write_nir
from export.torch_to_nir import export_nir
from sddpm.errors import SddpmError
from sddpm.models import build_model
from sddpm.presets import get_preset


def _export(preset, **kwargs):
    torch.manual_seed(0)
    return export_nir(build_model(get_preset(preset), "snn"), **kwargs)


def test_stock_reader_rejects_the_extension_node(tmp_path):
    path = write_nir(_export("tiny"), tmp_path / "tiny.nir")
    with pytest.raises(Exception):
        nir.read(path)
    graph = read_nir(path)
    ups = [n for n in graph.nodes.values() if isinstance(n, Upsample2d)]
    assert ups and all(list(u.scale_factor) == [2, 2] for u in ups)


def test_single_level_export_is_standard_nir(tmp_path):
    graph = _export("digits-flat")
    assert not any(isinstance(n, Upsample2d) for n in graph.nodes.values())
    path = write_nir(graph, tmp_path / "flat.nir")
    stock = nir.read(path)  # the stock reader, with its type check
    ours = read_nir(path)
    assert set(stock.nodes) == set(ours.nodes) == set(graph.nodes)
    assert sorted(stock.edges) == sorted(ours.edges) == sorted(graph.edges)
    for name, node in graph.nodes.items():
        if isinstance(node, nir.Conv2d):
            assert np.array_equal(stock.nodes[name].weight, node.weight)
            assert np.array_equal(stock.nodes[name].bias, node.bias)
        if isinstance(node, nir.IF):
            assert np.array_equal(stock.nodes[name].v_threshold, node.v_threshold)


def test_round_trip_keeps_every_array_and_the_metadata(tmp_path):
    graph = _export("tiny")
    back = read_nir(write_nir(graph, tmp_path / "m.nir"))
    assert graph_info(back) == graph_info(graph)
    assert sorted(back.edges) == sorted(graph.edges)
    for key, value in graph.metadata["host"].items():
        assert np.array_equal(back.metadata["host"][key], value)
    info = graph_info(back)
    assert "v[t] > v_threshold" in info["neuron_convention"] and info["timesteps"] == 4


def test_graph_is_structurally_valid():
    graph = _export("tiny")
    graph.validate_structure()  # no duplicate edges, no dangling nodes
    for a, b in graph.edges:
        assert a in graph.nodes and b in graph.nodes


def test_unreadable_files_are_one_clear_error(tmp_path):
    bad = tmp_path / "bad.nir"
    bad.write_text("not hdf5")
    with pytest.raises(SddpmError, match="not a readable NIR file"):
        read_nir(bad)
    with pytest.raises(SddpmError, match="does not exist"):
        read_nir(tmp_path / "none.nir")
