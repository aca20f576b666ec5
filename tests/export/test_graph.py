"""Walking a graph: predecessors, a topological order, and the graphs it refuses."""

import nir
import numpy as np
import pytest

from sddpm.errors import SddpmError
from sddpm.export.graph import neighbours, topological_order


def _graph(edges, names=("a", "b", "c", "d")):
    nodes = {n: nir.Input(input_type={"input": np.array([1])}) for n in names}
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def test_a_diamond_runs_its_join_after_both_branches():
    graph = _graph([("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")])
    preds, succs = neighbours(graph)
    assert sorted(preds["d"]) == ["b", "c"] and sorted(succs["a"]) == ["b", "c"]
    assert topological_order(graph) == ["a", "b", "c", "d"]


def test_a_cycle_is_one_clear_error():
    with pytest.raises(SddpmError, match="cycle"):
        topological_order(_graph([("a", "b"), ("b", "c"), ("c", "b")]))


def test_an_edge_to_a_node_that_is_not_there_is_one_clear_error():
    graph = _graph([("a", "b"), ("b", "gone")], names=("a", "b"))
    with pytest.raises(SddpmError, match="gone.*not among its nodes"):
        topological_order(graph)
