"""Will a Lava run fit? Its memory and time, estimated from the bundle before compiling.

Lava forks one OS process per Lava process, and each costs memory of its own: the
interpreter's pages it writes to, its copy of its weights and state, its share of the
channels (shared memory, ``pypy_channel_size`` messages deep per connection) and the
page tables that fork copies from the parent. All of it is counted here from the graph
(the same processes :class:`~sddpm.export.nir_to_lava.LavaNetwork` builds) and from
figures measured on this project's 2-core machine (the constants below, with how they
were measured); a run the machine cannot hold is refused in one line before Lava
compiles anything, instead of swapping at 20 GB.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, dataclass, field

import nir
import numpy as np

from sddpm.errors import SddpmError

#: Machine memory a forked Lava process costs beyond its arrays, its channels and its
#: page tables (the interpreter and parent pages it writes, kernel structures), by
#: precision: measured as the growth of the machine's used memory (MemTotal -
#: MemAvailable) over one DDIM step of random-init cifar10 without spike taps (358
#: processes; float 12.7 GB, fixed point 16.1 GB), less the other parts. Smaller
#: networks cost less a process (fmnist-small: about 9 MB), so they are over-estimated:
#: the estimate is there to refuse a run before it swaps.
PROCESS_OVERHEAD_BYTES = {"float": 19 * 2**20, "fixed": 32 * 2**20}
#: Wall seconds a Lava step costs per process beyond its Conv arithmetic (the runtime's
#: phase handshakes and the channels, every process sharing 2 cores): fmnist-small with
#: spike taps, 6.15 s for 36 steps of 189 processes, less the arithmetic.
PROCESS_STEP_SECONDS = 0.8e-3
#: What reading a population's spikes costs beyond its Extractor process (counted with
#: the processes), per tapped neuron: host channels, the Extractor's and the host's
#: copies of every frame. Measured on random-init cifar10: all 63 taps (3.4 M neurons)
#: added 5.2 GB to a float run, 1.25 GB of it their processes; half of them (1.7 M)
#: 2.3 GB to a fixed-point one, 1.07 GB of it their processes: 1.16 and 0.72 kB
TAP_BYTES_PER_NEURON = 1200
#: fork copies the parent's page tables: 8 bytes per 4 KiB page of the parent's memory
PAGE_TABLE_FRACTION = 8 / 4096
#: a run warns as slow above this many minutes
SLOW_MINUTES = 30

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "k": 10**3,
          "m": 10**6, "g": 10**9, "t": 10**12}


def parse_size(text: str) -> int:
    """``"16GB"``, ``"1MB"``, ``"512MiB"``, ``"2e9"`` -> bytes."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-zA-Z]*)\s*", str(text))
    unit = match and match.group(2).lower()
    if not match or unit not in _UNITS:
        raise SddpmError(f"--max-memory {text!r} is not a size; write it as 16GB, 1MB or "
                         "512MiB")
    value = float(match.group(1)) * _UNITS[unit]
    if value <= 0:
        raise SddpmError(f"--max-memory {text!r} must be more than 0")
    return int(value)


def format_bytes(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def available_memory() -> int:
    """What the machine can still give: ``MemAvailable`` of ``/proc/meminfo``."""
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def resident_memory() -> int:
    """This process's resident memory (what the children's page tables map)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@dataclass
class RunEstimate:
    """What a Lava run of a graph will take; :meth:`summary` says it in one line."""

    processes: int
    lava_steps: int
    memory_bytes: int
    seconds: float
    parent_bytes: int = 0  # what this process held when estimating (counted in "parent")
    parts: dict = field(default_factory=dict)  # memory by what holds it, bytes
    counts: dict = field(default_factory=dict)  # processes by kind

    @property
    def seconds_per_lava_step(self) -> float:
        return self.seconds / max(self.lava_steps, 1)

    def summary(self) -> str:
        return (f"estimate: {self.processes} Lava processes, {format_bytes(self.memory_bytes)}"
                f" of memory, {self.lava_steps} Lava steps of ~{self.seconds_per_lava_step:.2f}"
                f" s (~{self.seconds / 60:.1f} min)")

    def to_dict(self) -> dict:
        return {**asdict(self), "seconds_per_lava_step": self.seconds_per_lava_step}


def _neurons(shape) -> int:
    return int(np.prod([int(s) for s in shape]))


def estimate_run(graph: nir.NIRGraph, T: int, *, images: int = 1, denoise_steps: int = 1,
                 fixed: bool = False, taps: bool | int = True,
                 channel_size: int | None = None,
                 parent_bytes: int | None = None) -> RunEstimate:
    """Memory and wall time of ``denoise_steps`` Lava forward passes of ``images`` images.

    Counts the processes and arrays :class:`~sddpm.export.nir_to_lava.LavaNetwork` builds
    for ``graph`` (without building it): LIF populations, one Conv per (conv, delay) pair
    with its own copy of the kernel, delay lines with their ring buffers, upsampling
    Sparse matrices, the host's injectors and extractors, spike taps. ``parent_bytes``
    (default: this process now) is the parent whose page tables every child copies.
    """
    from sddpm.export.from_checkpoint import lava_process_counts
    from sddpm.export.graph import neighbours
    from sddpm.export.latency import balance
    from sddpm.export.nir_file import Upsample2d
    from sddpm.export.nir_to_lava import _Shapes
    from sddpm.simulations.lava_runner import COMPILE_CONFIG

    channel_size = channel_size or COMPILE_CONFIG["pypy_channel_size"]
    schedule = balance(graph)
    shapes = _Shapes.from_graph(graph).of
    size = {name: _neurons(s) for name, s in shapes.items()}
    item = 4 if fixed else 8  # int32 or float64 arrays and messages
    preds, _ = neighbours(graph)
    populations = [n for n, node in graph.nodes.items() if isinstance(node, nir.IF)]
    # taps: every population (True), none (False), or that many of them
    tapped = len(populations) if taps is True else int(taps)
    convs = schedule.conv_instances()
    delays = {(preds[conv][0], wait) for conv, wait in convs if wait > 0}
    upsamplers = [n for n, node in graph.nodes.items() if isinstance(node, Upsample2d)]
    # the bundle's own processes, as the export counts them, and one Extractor per tap
    counts = lava_process_counts(graph, schedule)
    counts["extractors"] += tapped
    counts["total"] += tapped
    processes = counts["total"]

    target = {conv: t for conv, t in schedule.waits}
    kernels = sum(int(np.size(graph.nodes[c].weight)) for c in {c for c, _ in convs}) * item
    weights = state = messages = 0
    for conv, _ in convs:
        node = graph.nodes[conv]
        (source,) = preds[conv]
        out = size[target[conv]]
        # the Var's kernel, and in fixed point the float32 copy the BLAS product uses
        weights += int(np.size(node.weight)) * (item + (4 if fixed else 0))
        state += out * item  # a_buf
        messages += size[source] + out
    for source, wait in delays:
        state += wait * size[source] * item
        messages += 2 * size[source]
    for name in upsamplers:
        weights += size[name] * (item + 8)  # one weight and two indices per output
        messages += size[name] // 4 + size[name]
    for name in populations:
        state += 4 * size[name] * item  # u, v, bias_mant, bias_exp
    mean_population = sum(size[n] for n in populations) / max(len(populations), 1)
    tapped_neurons = int(tapped * mean_population)
    messages += sum(size[n] for n in graph.inputs)
    parent = resident_memory() if parent_bytes is None else parent_bytes
    # the taps' spikes kept (as bool) to compare afterwards
    recorded = images * denoise_steps * T * tapped_neurons
    parts = {
        "processes": processes * PROCESS_OVERHEAD_BYTES["fixed" if fixed else "float"],
        "weights": weights, "state": state,
        "channels": messages * item * channel_size,
        "taps": tapped_neurons * TAP_BYTES_PER_NEURON,
        # the parent keeps one kernel per conv for its processes' Vars when it forks
        "page_tables": int(processes * (parent + kernels) * PAGE_TABLE_FRACTION),
        "parent": parent + kernels + recorded,
    }
    from sddpm.export.lava_conv.kernel import DENSE_S_PER_MAC

    per_forward = math.ceil(schedule.steps_per_forward(T) / T) * T
    lava_steps = denoise_steps * (math.ceil(((images - 1) * T + per_forward) / T) * T)
    # dense products everywhere: an upper bound on the Conv arithmetic
    macs = sum(int(np.size(graph.nodes[c].weight)) * size[target[c]]
               // max(shapes[target[c]][2], 1) for c, _ in convs)
    cores = max(len(os.sched_getaffinity(0)), 1)
    step_s = processes * PROCESS_STEP_SECONDS + macs * DENSE_S_PER_MAC / cores
    return RunEstimate(processes=processes, lava_steps=lava_steps, parent_bytes=parent,
                       memory_bytes=int(sum(parts.values())), seconds=lava_steps * step_s,
                       parts=parts, counts=counts)


def check_budget(estimate: RunEstimate, max_memory: int | None = None) -> list[str]:
    """Refuse (one line) a run above ``max_memory`` bytes (default: what the machine has
    available now, plus what this process already holds: the estimate counts it, and
    the machine's available memory does not include it); warnings for a slow one."""
    if max_memory is None:
        limit = available_memory() + estimate.parent_bytes
        source = "the machine's available memory and this process's"
    else:
        limit, source = int(max_memory), "--max-memory"
    if estimate.memory_bytes > limit:
        big = max(estimate.parts, key=estimate.parts.get)
        raise SddpmError(
            f"this Lava run needs an estimated {format_bytes(estimate.memory_bytes)} "
            f"({estimate.processes} processes; most in {big}: "
            f"{format_bytes(estimate.parts[big])}), more than {source} "
            f"({format_bytes(limit)}); read fewer populations' spikes (--spike-taps 1/2, "
            "then 2/2, or none), run fewer images (--n), or raise --max-memory if the "
            "estimate is wrong for this machine")
    warnings = []
    if estimate.seconds > SLOW_MINUTES * 60:
        warnings.append(f"warning: this run will take about {estimate.seconds / 60:.0f} min "
                        f"({estimate.lava_steps} Lava steps); fewer --denoise-steps or --n "
                        "shorten it")
    return warnings
