"""Latency balancing: when every node of an sddpm NIR graph computes in Lava.

Lava adds one step per connection: a population firing at step s reaches the next one
through a ``Conv`` at step s + 1 (an upsampling ``Sparse`` adds one more). The trained
network is a per-timestep computation with no delays, so every path into a population
must take the same number of steps. :func:`balance` gives each node its arrival step
(1-based: the step at which it computes spiking timestep 0; timestep k follows at
arrival + k) and, for every synaptic edge arriving early, the number of steps its
source spikes must wait in a delay line.

Host inputs need no delay lines: the host injects each ``Input`` at its consumer's
arrival step. Pure Python, no Lava: the schedule is tested on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import nir

from sddpm.export.graph import neighbours, topological_order
from sddpm.export.nir_file import Upsample2d


@dataclass
class Schedule:
    """Arrival steps and delay-line lengths of a graph.

    Attributes
    ----------
    outputs : tuple
        The graph's ``Output`` nodes, whose arrival ends a forward pass.
    arrival : dict
        Node -> step at which it handles spiking timestep 0 (populations and the
        output: integrate; upsampling: emit). Conv nodes have no single arrival: they
        are instantiated per (target, wait).
    waits : dict
        ``(conv node, target)`` -> steps the conv's source spikes wait before the conv.
    input_steps : dict
        ``Input`` node -> arrival step of its consumer (when the host injects it).
    """

    outputs: tuple
    arrival: dict = field(default_factory=dict)
    waits: dict = field(default_factory=dict)
    input_steps: dict = field(default_factory=dict)

    @property
    def output_arrival(self) -> int:
        return max(self.arrival[n] for n in self.outputs)

    def latency(self) -> int:
        """Steps from the first input to the first output timestep, minus one: the
        steps a single forward pass needs beyond T."""
        return self.output_arrival - 1

    def steps_per_forward(self, timesteps: int) -> int:
        return self.output_arrival + timesteps - 1

    def conv_instances(self) -> list[tuple[str, int]]:
        """``(conv node, wait)`` pairs: each is one Lava ``Conv`` (shared by its targets)."""
        return sorted({(conv, wait) for (conv, _), wait in self.waits.items()})


def balance(graph: nir.NIRGraph) -> Schedule:
    """The arrival step of every node and the delay of every early edge."""
    preds, _ = neighbours(graph)
    schedule = Schedule(outputs=tuple(graph.outputs))
    for name in topological_order(graph):
        node = graph.nodes[name]
        if isinstance(node, (nir.Input, nir.Conv2d)):
            continue  # inputs are host-timed; convs take their target's timing
        if isinstance(node, Upsample2d):
            (source,) = preds[name]
            schedule.arrival[name] = schedule.arrival[source] + 1
            continue
        conv_sources = {}
        for p in preds[name]:
            if isinstance(graph.nodes[p], nir.Conv2d):
                (source,) = preds[p]
                conv_sources[p] = schedule.arrival[source] + 1
        arrival = max(conv_sources.values(), default=1)
        schedule.arrival[name] = arrival
        for conv, ready in conv_sources.items():
            schedule.waits[(conv, name)] = arrival - ready
        for p in preds[name]:
            if isinstance(graph.nodes[p], nir.Input):
                schedule.input_steps[p] = arrival
    return schedule
