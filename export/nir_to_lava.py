"""An sddpm NIR graph as Lava processes, latency-balanced, fed and read by the host.

Mapping (Lava 0.10, data in Lava's ``(W, H, C)`` layout):

- IF population -> ``LIFReset(du=1, dv=0, vth)``: ``v += a_in + bias``, spike when
  ``v > vth``, then ``v = 0`` (the IF neuron of the export); the conv biases of every
  edge into it are summed into its ``bias_mant``. It resets every T steps at the start
  of its window, so images follow each other through the network T steps apart.
- ``Conv2d`` -> ``Conv`` (true convolution: the torch kernel flipped and transposed to
  ``(C_out, kw, kh, C_in)``), one process per (conv node, delay-line length).
- ``sddpm.Upsample2d`` -> ``Sparse`` with one unit weight per output neuron.
- an early edge -> a :class:`~sddpm.export.lava_delay.process.DelayLine` on the source
  spikes (see :mod:`sddpm.export.latency`); fan-in -> several connections into one ``a_in``.
- ``Input`` -> ``Injector`` into the population's ``a_in``, sent by the host at the
  population's arrival step; ``Output`` -> ``Extractor`` (its conv biases are added by
  the host).

With a :class:`~sddpm.export.quantize.FixedPointNetwork` the same processes carry its
integers for Lava's ``fixed_pt`` models: ``LIFReset(du=4095, dv=0)`` (Loihi adds one to
``du``: the current keeps none of its past), integer ``vth``, ``bias_mant``/``bias_exp``
and conv weights; the host sends integer currents and scales the output stream back.
"""

from __future__ import annotations

from dataclasses import dataclass

import nir
import numpy as np
import scipy.sparse as sparse

from sddpm.errors import SddpmError
from sddpm.export.graph import neighbours
from sddpm.export.latency import Schedule, balance
from sddpm.export.nir_file import Upsample2d
from sddpm.export.quantize import FixedPointNetwork


def prepare_lava_import() -> None:
    """Let Lava import even when something already chose a multiprocessing start method.

    Lava calls ``multiprocessing.set_start_method('fork')`` when its runtime module is
    first imported, which fails once any start method is set (a torch DataLoader or a
    process pool earlier in the same process). Lava needs fork either way.
    """
    import multiprocessing as mp
    import sys

    if "lava.magma.runtime.message_infrastructure.multiprocessing" in sys.modules:
        return
    if mp.get_start_method(allow_none=True) is not None:
        mp.set_start_method(None, force=True)


def to_whc(x: np.ndarray) -> np.ndarray:
    """``[C, H, W]`` (or ``[..., C, H, W]``) -> Lava's ``(W, H, C)``."""
    return np.swapaxes(x, -1, -3)


def lava_conv_weight(weight: np.ndarray) -> np.ndarray:
    """torch ``(C_out, C_in, kh, kw)`` cross-correlation -> Lava ``(C_out, kw, kh, C_in)``."""
    return np.ascontiguousarray(weight[:, :, ::-1, ::-1].transpose(0, 3, 2, 1))


def upsample_matrix(shape_whc: tuple, factor: int, dtype=np.float64) -> sparse.csr_matrix:
    """Nearest upsampling of a flattened ``(W, H, C)`` array as a ``(4N, N)`` matrix."""
    w, h, c = shape_whc
    out = np.arange(w * factor * h * factor * c).reshape(w * factor, h * factor, c)
    src = np.arange(w * h * c).reshape(w, h, c)
    src = src.repeat(factor, axis=0).repeat(factor, axis=1)
    return sparse.csr_matrix((np.ones(out.size, dtype=dtype), (out.ravel(), src.ravel())),
                             shape=(out.size, w * h * c))


@dataclass
class _Shapes:
    """``(W, H, C)`` of what every node emits."""

    of: dict

    @classmethod
    def from_graph(cls, graph: nir.NIRGraph) -> "_Shapes":
        shapes = {}
        for name, node in graph.nodes.items():
            if isinstance(node, nir.IF):
                shapes[name] = to_whc_shape(node.v_threshold.shape)
            elif isinstance(node, Upsample2d):
                shapes[name] = to_whc_shape(tuple(node.output_type["output"]))
            elif isinstance(node, (nir.Input, nir.Output)):
                key = "input" if isinstance(node, nir.Input) else "output"
                types = node.input_type if isinstance(node, nir.Input) else node.output_type
                shapes[name] = to_whc_shape(tuple(types[key]))
        return cls(shapes)


def _check_supported(graph: nir.NIRGraph) -> None:
    """What the mapping handles; anything else is refused, never dropped."""
    _, consumers = neighbours(graph)
    for a, b in graph.edges:
        kinds = (type(graph.nodes[a]), type(graph.nodes[b]))
        allowed = {(nir.Input, nir.IF), (nir.IF, nir.Conv2d), (nir.IF, Upsample2d),
                   (Upsample2d, nir.Conv2d), (nir.Conv2d, nir.IF), (nir.Conv2d, nir.Output)}
        if kinds not in allowed:
            raise SddpmError(f"edge {a} -> {b} ({kinds[0].__name__} -> {kinds[1].__name__}) "
                             "has no Lava mapping here")
    for name, node in graph.nodes.items():
        if isinstance(node, nir.Input) and len(consumers[name]) != 1:
            raise SddpmError(f"Input {name} feeds {len(consumers[name])} nodes; the "
                             "host injects each input into exactly one population")
        if isinstance(node, nir.Conv2d) and (int(node.groups) != 1
                                             or np.any(np.asarray(node.dilation) != 1)):
            raise SddpmError(f"Conv2d {name}: groups {node.groups} / dilation "
                             f"{node.dilation} have no Lava Conv mapping here")
        if isinstance(node, Upsample2d) and len(set(int(f) for f in node.scale_factor)) != 1:
            raise SddpmError(f"{name}: upsampling by {node.scale_factor} per axis; one factor "
                             "for both axes is supported")


def to_whc_shape(chw: tuple) -> tuple:
    c, h, w = (int(s) for s in chw)
    return (w, h, c)


class LavaNetwork:
    """The processes of one graph, built but not yet run.

    Parameters
    ----------
    graph : nir.NIRGraph
        An sddpm export (read with :func:`sddpm.export.nir_file.read_nir`).
    timesteps : int
        Spiking timesteps T: every population resets every T steps.
    buffer_steps : int
        Capacity of the host channels, in Lava steps; runs are chunked to fit. Each
        channel reserves this many frames in shared memory up front.
    tap_spikes : bool or collection of str
        Also read every population's spikes out (one ``Extractor`` each), to compare
        them with the reference or count them; costs one process per population. A
        collection of population names taps those only.
    fixed : FixedPointNetwork, optional
        Integer parameters (:func:`sddpm.export.quantize.quantize_graph`): build for Lava's
        ``fixed_pt`` models. Without, the float graph for ``floating_pt``.
    """

    def __init__(self, graph: nir.NIRGraph, timesteps: int, buffer_steps: int = 16,
                 tap_spikes: bool = False, fixed: FixedPointNetwork | None = None):
        from sddpm.export.nir_file import graph_info

        exported_T = graph_info(graph)["timesteps"]
        if exported_T != timesteps:
            raise SddpmError(f"the graph was exported for T = {exported_T}, not {timesteps}")
        _check_supported(graph)
        prepare_lava_import()
        from lava.proc.io.extractor import Extractor
        from lava.proc.io.injector import Injector

        self.graph, self.T, self.buffer_steps = graph, timesteps, buffer_steps
        self.fixed = fixed
        self.schedule: Schedule = balance(graph)
        self.shapes = _Shapes.from_graph(graph).of
        self.preds, self.succs = neighbours(graph)
        self.bias = {name: np.zeros(self.shapes[name]) for name, n in graph.nodes.items()
                     if isinstance(n, (nir.IF, nir.Output))}
        self._collect_biases()
        self.populations = {name: self._population(name) for name, n in graph.nodes.items()
                            if isinstance(n, nir.IF)}
        self.injectors = {name: Injector(shape=self.shapes[name], buffer_size=buffer_steps)
                          for name in graph.inputs}
        (self.output,) = graph.outputs
        self.extractor = Extractor(shape=self.shapes[self.output], buffer_size=buffer_steps)
        self._upsamplers: dict = {}
        self._delayed: dict = {}
        self._convs: dict = {}
        self._kernels: dict = {}
        self.taps = {}
        tapped = (set(self.populations) if tap_spikes is True
                  else set(tap_spikes or ()))
        unknown = tapped - set(self.populations)
        if unknown:
            raise SddpmError(f"no population {sorted(unknown)[0]!r} to tap in this graph")
        for name, pop in self.populations.items():
            if name in tapped:
                self.taps[name] = Extractor(shape=self.shapes[name], buffer_size=buffer_steps)
                pop.s_out.connect(self.taps[name].in_port)
        self.processes = [*self.populations.values(), *self.injectors.values(), self.extractor,
                          *self.taps.values()]
        self._connect()

    # -- construction ------------------------------------------------------------

    def _collect_biases(self) -> None:
        for (conv, target) in self.schedule.waits:
            bias = np.asarray(self.graph.nodes[conv].bias, dtype=np.float64)
            self.bias[target] = self.bias[target] + bias[None, None, :]

    def _population(self, name: str):
        from lava.proc.lif.process import LIFReset

        node = self.graph.nodes[name]
        threshold = np.unique(np.asarray(node.v_threshold))
        if threshold.size != 1 or np.any(np.asarray(node.r) != 1):
            raise SddpmError(f"IF node {name}: Lava's LIF has one threshold per process and "
                             "no input resistance; the export must have one v_threshold and r = 1")
        arrival = self.schedule.arrival[name]
        timing = dict(reset_interval=self.T, reset_offset=arrival % self.T, name=name)
        if self.fixed is None:
            return LIFReset(shape=self.shapes[name], du=1.0, dv=0.0, vth=float(threshold[0]),
                            bias_mant=self.bias[name], **timing)
        per_neuron = lambda v: np.broadcast_to(v, self.shapes[name]).astype(np.int32)  # noqa: E731
        return LIFReset(shape=self.shapes[name], du=4095, dv=0, vth=self.fixed.lava_vth(name),
                        bias_mant=per_neuron(self.fixed.bias_mant[name]),
                        bias_exp=per_neuron(self.fixed.bias_exp[name]), **timing)

    def _source_port(self, source: str):
        """The OutPort carrying ``source``'s spikes (an upsampling Sparse is built once)."""
        node = self.graph.nodes[source]
        if isinstance(node, nir.IF):
            return self.populations[source].s_out
        if isinstance(node, Upsample2d):
            if source not in self._upsamplers:
                from lava.proc.sparse.process import Sparse

                (pop,) = self.preds[source]
                factor = int(node.scale_factor[0])
                dtype = np.float64 if self.fixed is None else np.int32
                proc = Sparse(weights=upsample_matrix(self.shapes[pop], factor, dtype),
                              name=source)
                self.populations[pop].s_out.flatten().connect(proc.s_in)
                self._upsamplers[source] = proc
                self.processes.append(proc)
            return self._upsamplers[source].a_out.reshape(self.shapes[source])
        raise SddpmError(f"node {source} of type {type(node).__name__} cannot feed a conv")

    def _delayed_port(self, source: str, wait: int):
        """``source``'s spikes ``wait`` steps late, through one :class:`DelayLine`."""
        if wait == 0:
            return self._source_port(source)
        if (source, wait) not in self._delayed:
            from sddpm.export.lava_delay.process import DelayLine

            line = DelayLine(shape=self.shapes[source], delay=wait, name=f"{source}+{wait}")
            self._source_port(source).connect(line.s_in)
            self._delayed[(source, wait)] = line
            self.processes.append(line)
        return self._delayed[(source, wait)].a_out

    def _conv(self, conv: str, wait: int):
        if (conv, wait) not in self._convs:
            from lava.proc.conv.process import Conv

            node = self.graph.nodes[conv]
            (source,) = self.preds[conv]
            if conv not in self._kernels:  # one array for every delayed copy of a conv
                weight = (np.asarray(node.weight, dtype=np.float64) if self.fixed is None
                          else self.fixed.weights[conv])
                self._kernels[conv] = lava_conv_weight(weight)
            proc = Conv(weight=self._kernels[conv],
                        input_shape=self.shapes[source],
                        padding=tuple(int(p) for p in node.padding)[::-1],
                        stride=tuple(int(s) for s in node.stride)[::-1],
                        name=f"{conv}+{wait}")
            self._delayed_port(source, wait).connect(proc.s_in)
            self._convs[(conv, wait)] = proc
            self.processes.append(proc)
        return self._convs[(conv, wait)]

    def _connect(self) -> None:
        for (conv, target), wait in self.schedule.waits.items():
            port = (self.extractor.in_port if target == self.output
                    else self.populations[target].a_in)
            self._conv(conv, wait).a_out.connect(port)
        for name, injector in self.injectors.items():
            (target,) = self.succs[name]
            injector.out_port.connect(self.populations[target].a_in)

    # -- running -----------------------------------------------------------------

    def encode(self, name: str, current_chw: np.ndarray) -> np.ndarray:
        """What the host sends ``Input`` ``name`` each step, in Lava's layout."""
        if self.fixed is None:
            return to_whc(np.asarray(current_chw, dtype=np.float64))
        (target,) = self.succs[name]
        return to_whc(self.fixed.host_current(target, current_chw))

    def decode(self, stream_whc: np.ndarray) -> np.ndarray:
        """The ``Output`` as read from the ``Extractor`` -> float values, biases added."""
        if self.fixed is not None:
            stream_whc = self.fixed.output_value(self.output, stream_whc)
        return stream_whc + self.bias[self.output]

    def steps_for(self, images: int) -> int:
        """Lava steps to push ``images`` forward passes through, one after another."""
        return (images - 1) * self.T + self.schedule.steps_per_forward(self.T)
