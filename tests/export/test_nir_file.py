import nir
import numpy as np
import pytest
import torch

from sddpm.errors import SddpmError
from sddpm.export.nir_file import Upsample2d, graph_info, read_nir, write_nir
from sddpm.export.torch_to_nir import export_nir
from sddpm.models import build_model
from sddpm.presets import get_preset


def _export(preset, **kwargs):
    torch.manual_seed(0)
    return export_nir(build_model(get_preset(preset), "snn"), **kwargs)


def test_stock_reader_rejects_the_extension_node(tmp_path):
    path = write_nir(_export("tiny"), tmp_path / "tiny.nir")
    with pytest.raises((AssertionError, KeyError)):  # NIR's node-type lookup
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


def test_write_is_atomic_and_leaves_no_temporary_files(tmp_path):
    target = tmp_path / "m.nir"
    write_nir(_export("tiny"), target)
    before = target.read_bytes()
    broken = _export("tiny")
    broken.metadata["host"]["bad"] = object()  # h5py cannot store it
    with pytest.raises(TypeError):
        write_nir(broken, target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.nir"]


def test_foreign_nir_files_get_one_clear_error(tmp_path):
    from sddpm.export.executor import predict_noise

    graph = nir.NIRGraph.from_list(nir.Input(np.array([2])), nir.Affine(np.eye(2), np.zeros(2)),
                                   nir.Output(np.array([2])))
    path = tmp_path / "foreign.nir"
    nir.write(path, graph)
    back = read_nir(path)  # a standard file reads
    with pytest.raises(SddpmError, match="not written by sddpm-export"):
        graph_info(back)
    with pytest.raises(SddpmError, match="not written by sddpm-export"):
        predict_noise(back, torch.zeros(1, 1, 8, 8), torch.zeros(1, dtype=torch.long))
    back.metadata["sddpm"] = "{not json"
    with pytest.raises(SddpmError, match="not JSON"):
        graph_info(back)
