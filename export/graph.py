"""Walking an sddpm NIR graph: who feeds whom, and an order that respects it.

Plain Python over ``graph.nodes`` and ``graph.edges``, no torch and no Lava, so the
schedule (:mod:`sddpm.export.latency`) and the quantisation load nothing heavy.
"""

from __future__ import annotations

from collections import defaultdict, deque

import nir

from sddpm.errors import SddpmError


def neighbours(graph: nir.NIRGraph) -> tuple[dict, dict]:
    """``(preds, succs)``: node -> the nodes with an edge into it / out of it (lists)."""
    preds, succs = defaultdict(list), defaultdict(list)
    for a, b in graph.edges:
        preds[b].append(a)
        succs[a].append(b)
    return preds, succs


def topological_order(graph: nir.NIRGraph) -> list[str]:
    """Every node after all of its predecessors (Kahn's algorithm, stable)."""
    preds, succs = neighbours(graph)
    unknown = sorted({n for edge in graph.edges for n in edge} - set(graph.nodes))
    if unknown:
        raise SddpmError(f"the NIR graph has edges to or from {', '.join(unknown[:3])}, "
                         "which are not among its nodes; the graph is damaged, export it "
                         "again")
    waiting = {n: len(preds[n]) for n in graph.nodes}
    ready = deque(n for n, k in waiting.items() if k == 0)
    order = []
    while ready:
        n = ready.popleft()
        order.append(n)
        for m in succs[n]:
            waiting[m] -= 1
            if waiting[m] == 0:
                ready.append(m)
    if len(order) != len(graph.nodes):
        raise SddpmError("the NIR graph has a cycle; sddpm runs feed-forward graphs only")
    return order


def _channels_out(node) -> int | None:
    """Channels a node emits (IF, Input, sddpm.Upsample2d, Conv2d), ``None`` if unknown."""
    import numpy as np

    if isinstance(node, nir.IF):
        return int(np.shape(node.v_threshold)[0])
    if isinstance(node, nir.Input):
        return int(node.input_type["input"][0])
    if isinstance(node, nir.Conv2d):
        return int(np.shape(node.weight)[0])
    types = getattr(node, "output_type", None)
    if isinstance(types, dict) and "output" in types and len(types["output"]):
        return int(types["output"][0])
    return None


def check_shapes(graph: nir.NIRGraph) -> None:
    """Every conv's weight fits what feeds it and what it feeds, by channels; its bias
    has one value per output channel. A damaged graph stops here, before Lava."""
    import numpy as np

    preds, succs = neighbours(graph)
    for name, node in graph.nodes.items():
        if not isinstance(node, nir.Conv2d):
            continue
        weight = np.asarray(node.weight)
        if weight.ndim != 4 or np.shape(node.bias) != (weight.shape[0],):
            raise SddpmError(f"Conv2d {name} has weight {list(weight.shape)} and bias "
                             f"{list(np.shape(node.bias))}; expected (C_out, C_in, kh, kw) and "
                             "(C_out,): the graph is damaged, export it again")
        for source in preds[name]:
            found = _channels_out(graph.nodes[source]) if source in graph.nodes else None
            if found is not None and found != weight.shape[1]:
                raise SddpmError(f"Conv2d {name} reads {weight.shape[1]} channels but {source} "
                                 f"emits {found}: the graph is damaged, export it again")
        for target in succs[name]:
            node_t = graph.nodes.get(target)
            if isinstance(node_t, nir.IF):
                want = int(np.shape(node_t.v_threshold)[0])
            elif isinstance(node_t, nir.Output):
                want = int(node_t.output_type["output"][0])
            else:
                continue
            if want != weight.shape[0]:
                raise SddpmError(f"Conv2d {name} writes {weight.shape[0]} channels into "
                                 f"{target}, which has {want}: the graph is damaged, export "
                                 "it again")
