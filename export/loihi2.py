"""What a bundle's network would need of Loihi 2: per population, and in cores and chips.

Read from the graph and its latency schedule, against a data file of limits
(``chip_limits/loihi2.json``: each limit with its source, or marked as an estimate and
why). Per IF population: neurons, the weights stored for its incoming convolutions
(shared kernels) and the fan-in per neuron (kernel taps x input channels, summed over
its incoming maps), the synapses they expand to (neurons x fan-in), the delay lines
into it, and the neuro-cores it needs (the larger of neurons and expanded synapses
over a core's limits). A synapse is counted expanded because the per-core storage of
a shared kernel is not published; the expanded count is the upper bound.

What cannot map to a chip as the mapping stands is flagged: a delay above the maximum,
a population above one core (the mapping does not split populations), a fan-in above
one core's input axons.
"""

from __future__ import annotations

import json
import math
from importlib import resources

import nir
import numpy as np

from sddpm.errors import SddpmError
from sddpm.export.graph import neighbours
from sddpm.export.latency import balance
from sddpm.export.nir_file import Upsample2d

LIMITS_FILE = "loihi2.json"


def load_limits(name: str = LIMITS_FILE) -> dict:
    """The limits file: ``{"chip", "note", "limits": {name: {value, kind, source|why}}}``."""
    text = resources.files("sddpm.export").joinpath("chip_limits", name).read_text()
    data = json.loads(text)
    for key, entry in data["limits"].items():
        if not isinstance(entry.get("value"), int) or entry["value"] <= 0:
            raise SddpmError(f"chip limits {name}: {key} has no positive integer value")
        if entry.get("kind") == "published" and not entry.get("source"):
            raise SddpmError(f"chip limits {name}: {key} is 'published' without a source")
        if entry.get("kind") == "estimate" and not entry.get("why"):
            raise SddpmError(f"chip limits {name}: {key} is an estimate without a reason")
    return data


def resource_report(graph: nir.NIRGraph, limits: dict | None = None,
                    schedule=None) -> dict:
    """Per population and in total, what the network needs of the chip (JSON-ready);
    ``schedule`` is the graph's :func:`~sddpm.export.latency.balance` when at hand."""
    limits = limits or load_limits()
    lim = {k: v["value"] for k, v in limits["limits"].items()}
    schedule = schedule or balance(graph)
    preds, _ = neighbours(graph)
    rows, flags = [], []
    for name, node in graph.nodes.items():
        if not isinstance(node, nir.IF):
            continue
        neurons = int(np.prod(np.shape(node.v_threshold)))
        weights = fan_in = 0
        delays = []
        for (conv, target), wait in schedule.waits.items():
            if target != name:
                continue
            weight = graph.nodes[conv].weight
            w = np.shape(weight)  # (C_out, C_in, kh, kw)
            weights += int(np.prod(w))
            if w[2:] == (1, 1):  # a 1x1 map stores its non-zero synapses only (unit maps: 1)
                fan_in += int(np.ceil(np.count_nonzero(weight) / w[0]))
            else:
                fan_in += int(w[1] * w[2] * w[3])
            if wait:
                delays.append(int(wait))
        external = [p for p in preds[name] if isinstance(graph.nodes[p], nir.Input)]
        synapses = neurons * fan_in
        cores = max(math.ceil(neurons / lim["neurons_per_core"]),
                    math.ceil(synapses / lim["synapses_per_core"]), 1)
        row = {"population": name, "neurons": neurons, "weights": weights,
               "fan_in": fan_in, "synapses": synapses, "host_input": bool(external),
               "delays": sorted(set(delays)), "cores": cores}
        rows.append(row)
        if delays and max(delays) > lim["max_delay_steps"]:
            flags.append({"population": name, "kind": "delay", "value": max(delays),
                          "text": f"{name}: a delay of {max(delays)} steps, above the "
                                  f"{lim['max_delay_steps']}-step maximum"})
        if cores > 1:
            flags.append({"population": name, "kind": "split", "value": cores,
                          "text": f"{name}: needs {cores} cores ({neurons:,} neurons, "
                                  f"{synapses:,} synapses); the mapping does not split a "
                                  "population across cores yet"})
        if fan_in > lim["fan_in_axons_per_core"]:
            flags.append({"population": name, "kind": "fan_in", "value": fan_in,
                          "text": f"{name}: fan-in {fan_in:,} per neuron, above a core's "
                                  f"{lim['fan_in_axons_per_core']:,} input axons"})
    upsamplers = sum(isinstance(n, Upsample2d) for n in graph.nodes.values())
    total = {k: sum(r[k] for r in rows) for k in ("neurons", "weights", "synapses", "cores")}
    chips = max(math.ceil(total["cores"] / lim["neuro_cores_per_chip"]),
                math.ceil(total["neurons"] / lim["neurons_per_chip"]),
                math.ceil(total["synapses"] / lim["synapses_per_chip"]), 1)
    return {"chip": limits["chip"], "limits": limits["limits"], "populations": rows,
            "total": {**total, "populations": len(rows), "chips": chips,
                      "upsampling_maps": upsamplers,
                      "longest_delay": max((max(r["delays"], default=0) for r in rows),
                                           default=0)},
            "flags": flags}


def format_report(report: dict, per_population: bool = True,
                  per_population_flags: bool = False) -> str:
    """The report as text: one line per population, the totals, the flags (one line per
    kind with its worst case, or every one)."""
    lines = []
    if per_population:
        lines.append(f"  {'population':34s} {'neurons':>9s} {'weights':>10s} {'fan-in':>7s} "
                     f"{'synapses':>13s} {'delays':>10s} {'cores':>5s}")
        for r in report["populations"]:
            delays = ",".join(str(d) for d in r["delays"]) or "-"
            lines.append(f"  {r['population'][:34]:34s} {r['neurons']:9,d} {r['weights']:10,d} "
                         f"{r['fan_in']:7,d} {r['synapses']:13,d} {delays[:10]:>10s} "
                         f"{r['cores']:5d}")
    t = report["total"]
    lines.append(f"  {report['chip']}: {t['populations']} populations, {t['neurons']:,} neurons, "
                 f"{t['weights']:,} weights ({t['synapses']:,} synapses expanded), longest "
                 f"delay {t['longest_delay']} steps: about {t['cores']} neuro-cores, "
                 f"{t['chips']} chip(s)")
    estimates = [k for k, v in report["limits"].items() if v.get("kind") == "estimate"]
    lines.append(f"  (per-core limits are not published; estimated: {', '.join(estimates)})")
    for kind in ("delay", "split", "fan_in"):
        flags = [f for f in report["flags"] if f["kind"] == kind]
        if len(flags) == 1 or (flags and per_population_flags):
            lines.extend(f"  cannot map as it stands: {f['text']}" for f in flags)
        elif flags:
            worst = max(flags, key=lambda f: f["value"])
            lines.append(f"  cannot map as it stands: {len(flags)} populations ({_WHAT[kind]}); "
                         f"the worst: {worst['text']}")
    return "\n".join(lines)


_WHAT = {"delay": "delays above the maximum", "split": "larger than one core",
         "fan_in": "fan-in above a core's input axons"}
