"""Loihi 2 fixed point for an sddpm NIR graph: integer weights, thresholds, biases.

What a neuron computes in Lava's ``fixed_pt`` LIF (``PyLifResetModelBitAcc``) with
``du = 4095`` (the hardware adds one: the current keeps nothing of its past) and
``dv = 0``::

    v += (a_in << 6) + (bias_mant << bias_exp);  spike if v > (vth << 6);  then v = 0

``a_in`` is the sum of integer weights of the spikes arriving (plus integer host
currents). All inputs of one neuron meet one threshold, so every weight feeding a
population shares one scale ``s`` (integer units per float unit) with its threshold,
bias and host currents: ``w = round(W s)``, ``vth = round(theta s)``,
``bias = round(b s 64)``. A conv feeding several populations is one Lava ``Conv``
with one weight array, so those populations share one scale too (:func:`scale_groups`).
Each group's scale puts its largest weight at the top of the 8-bit range. The
``Output`` stream has a scale of its own, undone by the host.

A model that fires on ``v >= theta`` (the official SDDPM code's) keeps that rule on
integers, where ``v >= q`` is ``v > q - 1``. Lava compares with ``vth << 6``, so
``q - 1`` is only reachable when ``v`` moves in steps of 64: such a population's bias
is rounded to a multiple of 64 (``a_in`` units, the resolution of its weights), and
Lava gets ``vth - 1``. ``vth`` itself stays the model's threshold; the emulation fires
on ``v >= vth << 6`` directly, so the two meet only if the rounding argument holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import nir
import numpy as np

from sddpm.errors import SddpmError
from sddpm.export.graph import neighbours
from sddpm.export.nir_file import firing_rule, model_threshold
from sddpm.files import atomic_path

FORMAT = "sddpm-fixed-point"
FORMAT_VERSION = 1
# Loihi's state words: u, v and the shifted threshold are 24-bit signed
STATE_BITS = 24
ACTIVATION_SHIFT = 6  # a_in and vth are shifted left by 6 bits
BIAS_MANT_BITS = 13  # signed mantissa, exponent 0..7
BIAS_EXP_MAX = 7
VTH_MAX = 2 ** 17 - 1
# A population fed only by the host has no weight range to fill: this threshold
# gives its host currents about 10 bits below the threshold.
HOST_ONLY_VTH = 1 << 10


@dataclass
class FixedPointNetwork:
    """The integer parameters of a graph, as they go to Lava ``fixed_pt``.

    Attributes
    ----------
    weight_bits : int
        Signed weight width: weights lie in ``[-(2^(b-1) - 1), 2^(b-1) - 1]``.
    scale : dict
        IF population or ``Output`` node -> float scale (integer units per float unit).
    vth : dict
        Population -> integer threshold (Lava's ``vth``; compared with ``v`` as
        ``vth << 6``).
    bias_mant, bias_exp : dict
        Population -> per-channel ``(C,)`` integers; the bias added to ``v`` every step
        is ``bias_mant << bias_exp``.
    weights : dict
        Conv node -> integer weights in torch layout ``(C_out, C_in, kh, kw)``.
    fires_on : str
        ``">"`` (spike if ``v > vth << 6``) or ``">="`` (spike if ``v >= vth << 6``).
    """

    weight_bits: int
    scale: dict = field(default_factory=dict)
    vth: dict = field(default_factory=dict)
    bias_mant: dict = field(default_factory=dict)
    bias_exp: dict = field(default_factory=dict)
    weights: dict = field(default_factory=dict)
    fires_on: str = ">"

    def lava_vth(self, population: str) -> int:
        """The ``vth`` Lava's strict neuron gets: ``vth - 1`` for ``>=`` (see the module)."""
        return self.vth[population] - (1 if self.fires_on == ">=" else 0)

    def effective_bias(self, population: str) -> np.ndarray:
        """The per-channel integer added to ``v`` every step."""
        return np.left_shift(self.bias_mant[population].astype(np.int64),
                             self.bias_exp[population].astype(np.int64))

    def host_current(self, population: str, current) -> np.ndarray:
        """A float host current into ``population`` as Lava's integer ``a_in``."""
        a_in = np.rint(np.asarray(current, dtype=np.float64) * self.scale[population])
        limit = 2 ** (STATE_BITS - 1 - ACTIVATION_SHIFT)
        if np.abs(a_in).max(initial=0) >= limit:
            raise SddpmError(f"a host current into {population} reaches "
                             f"{np.abs(a_in).max():.0f}, beyond the 24-bit state "
                             f"(|a_in| < {limit}); the input is out of the trained range")
        return a_in.astype(np.int32)

    def output_value(self, output: str, stream) -> np.ndarray:
        """The integer ``Output`` stream back in float units (host biases not added)."""
        return np.asarray(stream, dtype=np.float64) / self.scale[output]


def scale_groups(graph: nir.NIRGraph) -> list[set]:
    """Sets of targets (IF or Output nodes) that must share one scale.

    Two targets share a scale when one conv feeds both; the relation is closed
    transitively (union-find over the conv -> target edges).
    """
    _, succs = neighbours(graph)
    parent = {n: n for n, node in graph.nodes.items() if isinstance(node, (nir.IF, nir.Output))}

    def root(n):
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for name, node in graph.nodes.items():
        if isinstance(node, nir.Conv2d):
            first, *rest = succs[name]
            for other in rest:
                parent[root(other)] = root(first)
    groups: dict = {}
    for n in parent:
        groups.setdefault(root(n), set()).add(n)
    return sorted(groups.values(), key=lambda g: sorted(g)[0])


def summed_bias(graph: nir.NIRGraph, target: str) -> np.ndarray:
    """The per-channel float bias of a target: every conv bias into it, summed."""
    preds, _ = neighbours(graph)
    biases = [np.asarray(graph.nodes[p].bias, dtype=np.float64) for p in preds[target]
              if isinstance(graph.nodes[p], nir.Conv2d)]
    channels = _channels(graph, target)
    return np.sum(biases, axis=0) if biases else np.zeros(channels)


def _channels(graph: nir.NIRGraph, target: str) -> int:
    node = graph.nodes[target]
    if isinstance(node, nir.IF):
        return int(np.shape(node.v_threshold)[0])
    return int(node.output_type["output"][0])


def _bias_mant_exp(bias_v: np.ndarray, grid: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``round(bias_v)`` as ``mant << exp``, the smallest exponent that fits the mantissa.

    With ``grid`` (a power of two up to 64), the bias is a multiple of it: rounded to the
    grid first, it stays there at every exponent (each exponent up to 6 divides it
    exactly, each above is a multiple of 64).
    """
    mant_max = 2 ** (BIAS_MANT_BITS - 1) - 1
    bias_v = np.asarray(bias_v, dtype=np.float64)
    if grid > 1:  # rounded once more only where the grid asks: each rounding costs
        bias_v = np.rint(bias_v / grid) * grid
    exp = np.zeros(bias_v.shape, dtype=np.int64)
    while True:
        mant = np.rint(bias_v / (1 << exp)).astype(np.int64)
        over = np.abs(mant) > mant_max
        if not over.any():
            return mant.astype(np.int16), exp.astype(np.int16)
        if exp.max() >= BIAS_EXP_MAX:
            raise SddpmError(f"a bias of {np.abs(bias_v).max():.0f} (in v units) does not fit "
                             f"a {BIAS_MANT_BITS}-bit mantissa with exponent <= {BIAS_EXP_MAX}; "
                             "quantise with fewer weight bits")
        exp = np.where(over, exp + 1, exp)


def quantize_graph(graph: nir.NIRGraph, weight_bits: int = 8) -> FixedPointNetwork:
    """Integer parameters of every population, conv and output of ``graph``."""
    if not 2 <= int(weight_bits) <= 8:
        raise SddpmError(f"--weight-bits must lie in [2, 8] (Loihi 2's synapses hold 8), "
                         f"got {weight_bits}")
    preds, _ = neighbours(graph)
    w_max = 2 ** (int(weight_bits) - 1) - 1
    fixed = FixedPointNetwork(weight_bits=int(weight_bits), fires_on=firing_rule(graph))
    for group in scale_groups(graph):
        convs = {p for t in group for p in preds[t] if isinstance(graph.nodes[p], nir.Conv2d)}
        largest = max((float(np.abs(np.asarray(graph.nodes[c].weight)).max()) for c in convs),
                      default=0.0)
        if largest > 0:
            scale = w_max / largest
        else:
            # host-fed only (or all-zero weights): fix the threshold instead
            thetas = [_threshold(graph, t) for t in group if isinstance(graph.nodes[t], nir.IF)]
            scale = HOST_ONLY_VTH / max(thetas, default=1.0)
        for target in group:
            fixed.scale[target] = scale
            if isinstance(graph.nodes[target], nir.IF):
                _quantize_population(graph, target, scale, fixed)
        for conv in convs:
            w = np.rint(np.asarray(graph.nodes[conv].weight, dtype=np.float64) * scale)
            fixed.weights[conv] = np.clip(w, -w_max, w_max).astype(np.int32)
    return fixed


def _threshold(graph: nir.NIRGraph, population: str) -> float:
    theta = np.unique(np.asarray(model_threshold(graph, population), dtype=np.float64))
    if theta.size != 1 or theta[0] <= 0:
        raise SddpmError(f"IF node {population}: fixed point needs one positive threshold per "
                         f"population, found {theta[:3]}")
    return float(theta[0])


def _quantize_population(graph, population, scale, fixed: FixedPointNetwork) -> None:
    vth = int(np.rint(_threshold(graph, population) * scale))
    if not 1 <= vth <= VTH_MAX:
        raise SddpmError(f"{population}: the threshold quantises to {vth}, outside Loihi's "
                         f"17-bit range [1, {VTH_MAX}]; the weights are too small or large "
                         "against the threshold")
    fixed.vth[population] = vth
    bias_v = summed_bias(graph, population) * scale * (1 << ACTIVATION_SHIFT)
    grid = (1 << ACTIVATION_SHIFT) if fixed.fires_on == ">=" else 1
    fixed.bias_mant[population], fixed.bias_exp[population] = _bias_mant_exp(bias_v, grid)


# -- the file in a bundle -------------------------------------------------------------

def write_fixed_point(fixed: FixedPointNetwork, path) -> Path:
    """Write the integer parameters to an HDF5 file, atomically."""
    import h5py

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["format"], f.attrs["format_version"] = FORMAT, FORMAT_VERSION
        f.attrs["weight_bits"] = fixed.weight_bits
        f.attrs["fires_on"] = fixed.fires_on
        for name, scale in fixed.scale.items():
            g = f.create_group(f"targets/{name}")
            g.attrs["scale"] = scale
            if name in fixed.vth:
                g.attrs["vth"] = fixed.vth[name]
                g["bias_mant"] = fixed.bias_mant[name]
                g["bias_exp"] = fixed.bias_exp[name]
        for name, w in fixed.weights.items():
            f[f"weights/{name}"] = w.astype(np.int8)
    return Path(path)


def read_fixed_point(path, graph: nir.NIRGraph) -> FixedPointNetwork:
    """Read the parameters written by :func:`write_fixed_point` and check them against
    ``graph``: every target and conv present, shapes and ranges as Loihi holds them."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FORMAT or f.attrs.get("format_version") != FORMAT_VERSION:
                raise SddpmError(f"{path} is not an sddpm fixed-point file of version "
                                 f"{FORMAT_VERSION}; export the bundle again")
            fixed = FixedPointNetwork(weight_bits=int(f.attrs["weight_bits"]),
                                      fires_on=str(f.attrs.get("fires_on", ">")))
            for name, g in f["targets"].items():
                fixed.scale[name] = float(g.attrs["scale"])
                if "vth" in g.attrs:
                    fixed.vth[name] = int(g.attrs["vth"])
                    fixed.bias_mant[name] = g["bias_mant"][()]
                    fixed.bias_exp[name] = g["bias_exp"][()]
            for name, w in f["weights"].items():
                fixed.weights[name] = w[()].astype(np.int32)
    except (OSError, KeyError, ValueError, TypeError, AttributeError) as e:
        raise SddpmError(f"{path} cannot be read as fixed-point parameters ({e}); export the "
                         "bundle again") from None
    check_against_graph(fixed, graph, path)
    return fixed


def check_against_graph(fixed: FixedPointNetwork, graph: nir.NIRGraph, what) -> None:
    """Every target and conv of ``graph`` present, shapes and ranges as Loihi holds them."""
    convs = {n: node for n, node in graph.nodes.items() if isinstance(node, nir.Conv2d)}
    pops = {n for n, node in graph.nodes.items() if isinstance(node, nir.IF)}
    targets = pops | set(graph.outputs)
    problems = []
    if not 2 <= fixed.weight_bits <= 8:
        problems.append(f"weight_bits {fixed.weight_bits} is outside [2, 8]")
    elif fixed.fires_on != (rule := firing_rule(graph)):
        problems.append(f"it fires on {fixed.fires_on!r}, the graph on {rule!r}")
    elif set(fixed.weights) != set(convs) or set(fixed.scale) != targets or set(fixed.vth) != pops:
        problems.append("its nodes differ from the graph's")
    elif not all(np.isfinite(s) and s > 0 for s in fixed.scale.values()):
        problems.append("a scale is not a positive number")
    else:
        w_max = 2 ** (fixed.weight_bits - 1) - 1
        mant_max = 2 ** (BIAS_MANT_BITS - 1)
        for name, w in fixed.weights.items():
            if w.shape != np.shape(convs[name].weight) or np.abs(w).max(initial=0) > w_max:
                problems.append(f"weights of {name} have the wrong shape or range")
        for name in pops:
            channels = _channels(graph, name)
            mant, exp = fixed.bias_mant[name], fixed.bias_exp[name]
            if (mant.shape != (channels,) or exp.shape != (channels,)
                    or not 1 <= fixed.vth[name] <= VTH_MAX
                    or np.any(mant < -mant_max) or np.any(mant >= mant_max)
                    or np.any(exp < 0) or np.any(exp > BIAS_EXP_MAX)):
                problems.append(f"threshold or bias of {name} is out of shape or range")
    if problems:
        raise SddpmError(f"{what} does not fit the bundle's graph ({problems[0]}); the bundle "
                         "is damaged, export it again")
