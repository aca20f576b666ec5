"""A PyTorch emulation of the fixed-point deployment, bit for bit with Lava ``fixed_pt``.

Every population is lava-dl SLAYER's Loihi CUBA neuron (``slayer.neuron.cuba``) with
``current_decay = 1`` and ``voltage_decay = 0``: its integer dynamics add up the input
times 4096 and spike at ``4096 * threshold``. Lava's neuron does
``v += (a_in << 6) + bias``, spikes on ``v > vth << 6``. Fed ``a_in + bias / 64`` with
threshold ``vth + 1/64``, SLAYER's state is ``64 v`` and it spikes on
``64 v >= 64 (64 vth + 1)``: exactly Lava's strict ``>`` on integers. SLAYER's own
epsilon (0.01 / 4096) is set to 0: float32 drops it for some thresholds and keeps it
for others, which would blur the comparison. A ``>=`` network (the official SDDPM
code's rule) gets threshold ``vth`` itself: SLAYER's own ``>=`` on ``64 v >= 64 vth``.
Where Loihi's 24-bit words would wrap or clip (which SLAYER does not model) so that the
result would change, the emulation stops with an error instead of silently differing.

A population runs all T timesteps at once (the graph has no recurrence), so a whole
sampling run fits in ordinary batched convolutions: fast enough for full samplers.
float32 is exact here: every value is an integer times a power of two below 2^24 in
mantissa, which the 24-bit range checks guarantee.
"""

from __future__ import annotations

import contextlib
import io

import nir
import torch
import torch.nn.functional as F

from sddpm.errors import SddpmError
from sddpm.export.executor import HostSide
from sddpm.export.graph import neighbours, topological_order
from sddpm.export.nir_file import Upsample2d
from sddpm.export.quantize import (
    ACTIVATION_SHIFT,
    STATE_BITS,
    FixedPointNetwork,
    summed_bias,
)

# SLAYER's default neuron scale: weights at 64 per unit, states at 64 * 64
SLAYER_SCALE = 1 << 6
STATE_LIMIT = 2 ** (STATE_BITS - 1)


def _slayer_cuba():
    # lava-dl prints about CUDA and an optional dataset toolbox on import
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        from lava.lib.dl.slayer.neuron import cuba
    return cuba


class FixedPointEmulator:
    """Runs the integer network: ``run(inputs, T) -> (outputs, spikes)``.

    ``inputs`` maps each ``Input`` node to its integer ``a_in`` ``[B, C, H, W]`` (the
    same every timestep); ``outputs`` maps the ``Output`` node to the integer stream
    ``[T, B, C, H, W]`` and ``spikes`` every population to ``[T, B, C, H, W]``.
    """

    def __init__(self, graph: nir.NIRGraph, fixed: FixedPointNetwork, dtype=torch.float32):
        cuba = _slayer_cuba()
        self.graph, self.fixed, self.dtype = graph, fixed, dtype
        self.order = topological_order(graph)
        self.preds, _ = neighbours(graph)
        self.weights = {name: torch.as_tensor(w, dtype=dtype) for name, w in fixed.weights.items()}
        self.neurons, self.bias = {}, {}
        for name, node in graph.nodes.items():
            if isinstance(node, nir.IF):
                # SLAYER's threshold mantissa is (64 vth + 1) for '>', 64 vth for '>=':
                # see the module docstring
                strict = 1 / SLAYER_SCALE if fixed.fires_on == ">" else 0.0
                neuron = cuba.Neuron(threshold=fixed.vth[name] + strict,
                                     current_decay=1.0, voltage_decay=0.0, scale=SLAYER_SCALE)
                # its epsilon would make '>=' a '>' on top of the +1, where float32 keeps
                # it (vth < 64): the +1 alone is Lava's strict comparison
                neuron.threshold_eps = 0.0
                self.neurons[name] = neuron
                bias = torch.as_tensor(fixed.effective_bias(name), dtype=dtype)
                self.bias[name] = bias[None, :, None, None]

    def _neuron(self, name: str, a_in: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """Integer ``a_in [T, B, C, H, W]`` and integer ``bias`` (broadcast) -> spikes."""
        if a_in.abs().max() * (1 << ACTIVATION_SHIFT) >= STATE_LIMIT:
            raise SddpmError(f"{name}: the input current reaches {int(a_in.abs().max())}, which "
                             "wraps Loihi's 24-bit current; quantise with fewer weight bits")
        x = a_in + bias / SLAYER_SCALE  # [T, B, C, H, W]: SLAYER's state is 64 v
        neuron = self.neurons[name]
        _, voltage = neuron.dynamics(x.permute(1, 2, 3, 4, 0).contiguous())
        # Lava clips v to 24 bits; above, v is past every threshold and resets alike,
        # below, the clipped v would differ from SLAYER's
        if (voltage.min() * SLAYER_SCALE) <= -STATE_LIMIT:  # voltage is v / 64
            raise SddpmError(f"{name}: the voltage falls below Loihi's 24-bit range (where "
                             "it clips); quantise with fewer weight bits")
        return neuron.spike(voltage).permute(4, 0, 1, 2, 3)

    @torch.no_grad()
    def run(self, inputs: dict, timesteps: int) -> tuple[dict, dict]:
        return self.forward(inputs, timesteps)

    def forward(self, inputs: dict, timesteps: int, weights: dict | None = None) -> tuple[dict,
                                                                                          dict]:
        """:meth:`run` with gradients (SLAYER's surrogate), optionally with other integer
        ``weights`` (conv node -> tensor; quantisation-aware fine-tuning passes them)."""
        weights = self.weights if weights is None else weights
        missing = set(self.graph.inputs) - set(inputs)
        if missing:
            raise SddpmError(f"inputs missing for {', '.join(sorted(missing))}")
        T = timesteps
        values: dict = {}
        spikes, outputs = {}, {}
        for name in self.order:
            node = self.graph.nodes[name]
            if isinstance(node, nir.Input):
                values[name] = torch.as_tensor(inputs[name], dtype=self.dtype)[None]
                continue
            x = sum(values[p] for p in self.preds[name])
            if isinstance(node, nir.Conv2d):
                x = x.expand(T, *x.shape[1:]) if x.shape[0] == 1 else x
                flat = x.reshape(-1, *x.shape[2:])
                y = F.conv2d(flat, weights[name], stride=tuple(int(s) for s in node.stride),
                             padding=tuple(int(p) for p in node.padding))
                if y.abs().max() >= STATE_LIMIT:
                    raise SddpmError(f"{name}: a conv sum leaves the 24-bit range Lava clamps to")
                values[name] = y.reshape(T, -1, *y.shape[1:])
            elif isinstance(node, Upsample2d):
                factor = tuple(float(s) for s in node.scale_factor)
                flat = x.reshape(-1, *x.shape[2:])
                values[name] = F.interpolate(flat, scale_factor=factor, mode="nearest").reshape(
                    T, -1, *x.shape[2:3], *(int(d * f) for d, f in zip(x.shape[3:], factor)))
            elif isinstance(node, nir.IF):
                x = x.expand(T, *x.shape[1:]) if x.shape[0] == 1 else x
                values[name] = spikes[name] = self._neuron(name, x, self.bias[name])
            elif isinstance(node, nir.Output):
                values[name] = outputs[name] = x
            else:
                raise SddpmError(f"node {name} is a {type(node).__name__}; the fixed-point "
                                 "emulation runs Input, Output, Conv2d, IF and sddpm.Upsample2d")
        return outputs, spikes


class FixedPointNoisePredictor:
    """The fixed-point deployment as a noise predictor: ``(x, t) -> (eps, spikes)``.

    The host computes the graph's inputs in float64 and quantises them to the integer
    currents Lava receives; the integer output stream is scaled back and decoded.
    """

    def __init__(self, graph: nir.NIRGraph, fixed: FixedPointNetwork, dtype=torch.float32):
        self.graph, self.fixed = graph, fixed
        self.host = HostSide(graph)
        self.emulator = FixedPointEmulator(graph, fixed, dtype)
        (self.output,) = graph.outputs
        self.output_bias = torch.as_tensor(summed_bias(graph, self.output))[:, None, None]
        _, succs = neighbours(graph)
        self.consumer = {name: succs[name][0] for name in graph.inputs}

    def integer_inputs(self, x: torch.Tensor, t: torch.Tensor) -> dict:
        """The integer ``a_in`` the host sends each ``Input``'s population ``[B, C, H, W]``."""
        feeds = self.host.inputs(x, t)
        return {name: torch.from_numpy(self.fixed.host_current(self.consumer[name],
                                                               feeds[name].numpy()))
                for name in self.graph.inputs}

    def decode(self, stream: torch.Tensor) -> torch.Tensor:
        """Integer stream ``[T, B, C, H, W]`` -> predicted noise (differentiable: the
        fine-tuning trains through it)."""
        return self.host.decode(stream.double() / self.fixed.scale[self.output]
                                + self.output_bias)

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, dict]:
        eps, spikes, _ = self.run(x, t)
        return eps, spikes

    def run(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, dict, torch.Tensor]:
        """``(eps, spikes, integer output stream [T, B, C, H, W])``."""
        step = self.host.info["diffusion_step"]
        if step is not None and bool((t != step).any()):
            raise SddpmError(f"this graph was exported for diffusion step {step} only")
        outputs, spikes = self.emulator.run(self.integer_inputs(x.double(), t),
                                            self.host.config.timesteps)
        with torch.no_grad():
            return self.decode(outputs[self.output]), spikes, outputs[self.output]
