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
